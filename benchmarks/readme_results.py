"""
The README's results, generated rather than copied: the README holds one block per preset it reports,
``<!-- results:<preset> -->`` ... ``<!-- /results -->``, and ``python -m benchmarks.report --preset <preset>`` writes
into it the summary that it computes from the preset's CSV (:func:`benchmarks.report.summary`).
"""

import re
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"
BLOCK = re.compile(r"(?P<start><!-- results:(?P<preset>[\w.-]+) -->\n)(?P<body>.*?)(?P<end><!-- /results -->)", re.S)


def blocks(readme: Path) -> dict[str, str]:
    """
    The README's result blocks.

    :param readme: the README
    :return: preset -> the block's text between its markers
    """
    return {match["preset"]: match["body"] for match in BLOCK.finditer(readme.read_text())}


def write_block(readme: Path, preset_name: str, body: str) -> bool:
    """
    Replace the text of ``preset_name``'s block, if the README holds one.

    :param readme: the README
    :param preset_name: the preset
    :param body: the new text between the block's markers (it ends with a newline)
    :return: whether the README holds a block for the preset
    """
    text = readme.read_text()
    found = False

    def replace(match: re.Match[str]) -> str:
        nonlocal found
        if match["preset"] != preset_name:
            return match[0]
        found = True
        return match["start"] + body + match["end"]

    updated = BLOCK.sub(replace, text)
    if updated != text:
        readme.write_text(updated)
    return found
