"""Writes tests/data/prompt_attention_cases.json: random prompts and what A1111's parse_prompt_attention
(stable-diffusion-webui modules/prompt_parser.py, with the whitespace-tolerant weight regex) returns for
them, for tests/pipeline_prompt_weighting_test.cpp. BREAK is left out: sdrt deliberately differs there.
usage: python3 tools/make_prompt_attention_cases.py > tests/data/prompt_attention_cases.json"""
import json
import random
import re

re_attention = re.compile(r"""
\\\(|
\\\)|
\\\[|
\\]|
\\\\|
\\|
\(|
\[|
:\s*([+-]?[.\d]+)\s*\)|
\)|
]|
[^\\()\[\]:]+|
:
""", re.X)


def parse_prompt_attention(text):
    res, round_brackets, square_brackets = [], [], []

    def multiply_range(start, multiplier):
        for p in range(start, len(res)):
            res[p][1] *= multiplier

    for m in re_attention.finditer(text):
        text, weight = m.group(0), m.group(1)
        if text.startswith('\\'):
            res.append([text[1:], 1.0])
        elif text == '(':
            round_brackets.append(len(res))
        elif text == '[':
            square_brackets.append(len(res))
        elif weight is not None and round_brackets:
            multiply_range(round_brackets.pop(), float(weight))
        elif text == ')' and round_brackets:
            multiply_range(round_brackets.pop(), 1.1)
        elif text == ']' and square_brackets:
            multiply_range(square_brackets.pop(), 1 / 1.1)
        else:
            res.append([text, 1.0])
    for pos in round_brackets:
        multiply_range(pos, 1.1)
    for pos in square_brackets:
        multiply_range(pos, 1 / 1.1)
    if not res:
        res = [["", 1.0]]
    i = 0
    while i + 1 < len(res):
        if res[i][1] == res[i + 1][1]:
            res[i][0] += res[i + 1][0]
            res.pop(i + 1)
        else:
            i += 1
    return res


def main():
    rng = random.Random(16)
    alphabet = ["(", ")", "[", "]", ":", "\\", "a", "b", " ", "1", ".", "2", "-", "+", ",", "(", ")", ":1.5)", ":0.8)", ": 2 )", ":.)", ":1.2.3)"]
    cases = []
    while len(cases) < 400:
        prompt = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        try:
            cases.append({"prompt": prompt, "fragments": [[t, w] for t, w in parse_prompt_attention(prompt)]})
        except ValueError:
            cases.append({"prompt": prompt, "error": True})
    print("[\n" + ",\n".join(json.dumps(c) for c in cases) + "\n]")  # one case per line


main()
