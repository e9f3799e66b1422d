"""The paper's algorithm, one module a step: SFT (iteration 0), sampling, simulation, the PRM,
preference pairs, alignment and evaluation. Each takes typed configs and plain rows."""
