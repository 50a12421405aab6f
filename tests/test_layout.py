from collections import Counter
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "sb3_polygrad"


def test_no_two_modules_share_a_name():
    names = Counter(path.name for path in PACKAGE.rglob("*.py") if path.name != "__init__.py")
    assert [name for name, count in names.items() if count > 1] == []
