"""README stays true to the code: the two commands, CI calling the test one, and the
LMNLayer argument reference, which is rendered here from the layer's docstring."""

import inspect
import pathlib
import re

from lmn_tf.memory.layer import LMNLayer

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def docstring_args(cls) -> dict[str, str]:
    """The ``Args:`` section of a Google-style docstring: name -> one-line description."""
    section = inspect.getdoc(cls).split("Args:\n", 1)[1].split("\n\n", 1)[0]
    args: dict[str, str] = {}
    for line in section.splitlines():
        if match := re.match(r"\s{2}(\*{0,2}\w+): (.*)", line):
            name = match[1]
            args[name] = match[2]
        elif args:
            args[name] += " " + line.strip()
    return args


def render_api_table() -> str:
    params = inspect.signature(LMNLayer.__init__).parameters
    doc = docstring_args(LMNLayer)
    rows = ["| argument | default | meaning |", "|---|---|---|"]
    for name, param in params.items():
        if name == "self" or param.kind is param.VAR_KEYWORD:
            continue
        default = "required" if param.default is param.empty else f"`{param.default!r}`"
        rows.append(f"| `{name}` | {default} | {doc[name]} |")
    return "\n".join(rows)


def test_every_constructor_argument_is_documented():
    params = [p for p in inspect.signature(LMNLayer.__init__).parameters if p != "self"]
    documented = docstring_args(LMNLayer)
    assert [p for p in params if p != "kwargs"] == [d for d in documented if d != "**kwargs"]


def test_readme_api_reference_matches_the_docstring():
    section = README.split("<!-- api:begin -->\n", 1)[1].split("\n<!-- api:end -->", 1)[0]
    expected = render_api_table()
    assert section == expected, "README's LMNLayer table is stale; replace it with:\n" + expected


def test_readme_has_exactly_two_commands_and_ci_runs_the_test_one():
    block = README.split("## Two commands", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    assert re.search(r"^make test\b", (ROOT / ".ci/run").read_text(), re.MULTILINE)
