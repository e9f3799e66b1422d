"""Prompt templates for math questions.

Three styles: the SIPF authors' instruction prompt, the 8-shot chain-of-thought prompt of
Wei et al. (2022) in the authors' GSM8K-annotated form, and a compact prompt for the tiny
from-scratch default model (short prompts keep its training fast).
"""

from __future__ import annotations

from sipf.errors import ConfigError

# Verbatim from the SIPF authors, typo "Let't" included: a model fine-tuned with their
# prompt must see exactly the same text at evaluation time.
INSTRUCTION_TEMPLATE = (
    "### Instruction:\nLet't think step by step to answer following question.\n\n"
    "### Question:\n{question}\n\n### Answer:\n"
)

# The eight exemplars of Wei et al. (2022), questions as published; rationales written
# here in the SIPF style: one line, `<<expr=value>>` calculator annotations, closing
# "The answer is N" so that extract_answer reads few-shot output like fine-tuned output.
_COT_EXEMPLARS: tuple[tuple[str, str], ...] = (
    ("There are 15 trees in the grove. Grove workers will plant trees in the grove today. "
     "After they are done, there will be 21 trees. How many trees did the grove workers "
     "plant today?",
     "The grove had 15 trees and will have 21 afterwards. So the workers planted "
     "21 - 15 =<<21-15=6>>6 trees. The answer is 6"),
    ("If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in "
     "the parking lot?",
     "The lot starts with 3 cars and 2 more arrive, so it holds 3 + 2 =<<3+2=5>>5 cars. "
     "The answer is 5"),
    ("Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do "
     "they have left in total?",
     "Together they had 32 + 42 =<<32+42=74>>74 chocolates. After eating 35 they have "
     "74 - 35 =<<74-35=39>>39 left. The answer is 39"),
    ("Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. "
     "How many lollipops did Jason give to Denny?",
     "Jason went from 20 lollipops to 12, so he gave Denny 20 - 12 =<<20-12=8>>8 "
     "lollipops. The answer is 8"),
    ("Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How "
     "many toys does he have now?",
     "Shawn got 2 toys from each of 2 parents, which is 2 * 2 =<<2*2=4>>4 toys. He now "
     "has 5 + 4 =<<5+4=9>>9 toys. The answer is 9"),
    ("There were nine computers in the server room. Five more computers were installed "
     "each day, from monday to thursday. How many computers are now in the server room?",
     "Monday to thursday is 4 days, with 5 computers installed each day, so "
     "5 * 4 =<<5*4=20>>20 were added. The room now has 9 + 20 =<<9+20=29>>29 computers. "
     "The answer is 29"),
    ("Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost "
     "2 more. How many golf balls did he have at the end of wednesday?",
     "After tuesday Michael had 58 - 23 =<<58-23=35>>35 golf balls. After wednesday he had "
     "35 - 2 =<<35-2=33>>33. The answer is 33"),
    ("Olivia has $23. She bought five bagels for $3 each. How much money does she have "
     "left?",
     "Five bagels at 3 dollars each cost 5 * 3 =<<5*3=15>>15 dollars. Olivia has "
     "23 - 15 =<<23-15=8>>8 dollars left. The answer is 8"),
)

COT8_TEMPLATE = "".join(f"Q: {q}\nA: {a}\n\n" for q, a in _COT_EXEMPLARS) + "Q: {question}\nA: "

COMPACT_TEMPLATE = "Q: {question}\nA:\n"

_TEMPLATES = {
    "instruction": INSTRUCTION_TEMPLATE,
    "cot8": COT8_TEMPLATE,
    "compact": COMPACT_TEMPLATE,
    "code": "{question}",  # a code question is already its prompt (sipf.code.programs)
}
PROMPT_STYLES: tuple[str, ...] = tuple(_TEMPLATES)

# A few-shot model goes on to invent the next "Q:" exemplar; generation stops there.
COT_STOP = ("\n\nQ:", "\nQ:")


def format_prompt(question: str, style: str) -> str:
    """The prompt for ``question`` in ``style`` (one of :data:`PROMPT_STYLES`)."""
    try:
        template = _TEMPLATES[style]
    except KeyError:
        raise ConfigError(f"unknown prompt style {style!r}; "
                          f"valid styles: {', '.join(PROMPT_STYLES)}") from None
    # replace, not str.format: questions may contain braces (LaTeX in MMLU).
    return template.replace("{question}", question)

