"""The code-execution track: code records and prompts (programs), MBPP and HumanEval, the
paper's edit-distance dedup, pass@k, and the sandbox that alone runs model-written code."""
