"""The command-line grammar (README, "Command-line grammar") checked on every sub-command's parser.

One flag name means one thing in every sub-command: a flag that several sub-commands take has the
same kind there (dest, action, type, choices, nargs) and its help starts with its meaning in
:data:`gliomaseg.cli._common.MEANINGS`. Booleans are ``--x/--no-x`` only: no ``--x {true,false}``, no
lone ``--no-x`` switch. ``--model`` is a trained model (repeatable) and ``--arch`` the network to
train. Every sub-command's ``--help`` ends with an example. The checker is tried on bad parsers too,
so that it is known to catch what it is there to catch.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from gliomaseg.cli import build_parser
from gliomaseg.cli._common import MEANINGS, add_command, add_model_flag, add_out_flag

REPO = Path(__file__).resolve().parents[1]

#: Values of a boolean spelt as a value (``--x true``): the other style.
_BOOLEAN_WORDS = {"true", "false", "yes", "no", "on", "off", "0", "1"}


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def _kind(action: argparse.Action) -> tuple[object, ...]:
    """What a flag is, apart from its help and default: equal kinds = one meaning (with the help's start)."""
    choices = tuple(action.choices) if action.choices is not None else None
    kind = getattr(action.type or str, "__name__", action.type)  # no type: argparse keeps the text
    return (action.dest, type(action).__name__, kind, choices, action.nargs)


def _boolean_problem(command: str, action: argparse.Action) -> str | None:
    names = ", ".join(action.option_strings)
    lone_negative = any(s.startswith("--no-") for s in action.option_strings) and not isinstance(
        action, argparse.BooleanOptionalAction
    )
    if lone_negative:
        return f"{command} {names}: a lone --no-x switch; use --x/--no-x (argparse.BooleanOptionalAction)"
    words = {str(c).lower() for c in action.choices} if action.choices is not None else set()
    metavar = str(action.metavar or "").lower()
    as_value = (words and words <= _BOOLEAN_WORDS) or any(w in metavar for w in ("true", "false"))
    if as_value or getattr(action.type, "__name__", "") in ("parse_bool", "bool", "strtobool"):
        return f"{command} {names}: a boolean given as a value; use --x/--no-x (argparse.BooleanOptionalAction)"
    return None


def grammar_problems(parser: argparse.ArgumentParser) -> list[str]:
    """Every breach of the grammar in ``parser``'s sub-commands (empty: none)."""
    problems: list[str] = []
    uses: dict[str, list[tuple[str, argparse.Action]]] = defaultdict(list)
    for command, sub in _subcommands(parser).items():
        if "example:" not in (sub.epilog or "") or f"gliomaseg {command}" not in (sub.epilog or ""):
            problems.append(f"{command}: --help has no example line (epilog 'example: gliomaseg {command} ...')")
        for action in _options(sub):
            problem = _boolean_problem(command, action)
            if problem:
                problems.append(problem)
            for flag in action.option_strings:
                if flag.startswith("--") and not flag.startswith("--no-"):
                    uses[flag].append((command, action))
    for flag, used in sorted(uses.items()):
        kinds = {_kind(action) for _, action in used}
        if len(kinds) > 1:
            where = "; ".join(f"{c}: {_kind(a)}" for c, a in used)
            problems.append(f"{flag} has {len(kinds)} meanings: {where}")
        if len(used) > 1:
            meaning = MEANINGS.get(flag)
            if meaning is None:
                problems.append(f"{flag} is taken by {len(used)} commands but has no meaning in _common.MEANINGS")
                continue
            for command, action in used:
                if not (action.help or "").startswith(meaning):
                    problems.append(f"{command} {flag}: help {action.help!r} does not start with {meaning!r}")
    return problems


# ------------------------------------------------------------------------------- the real parser
def test_every_subcommand_follows_the_grammar() -> None:
    assert grammar_problems(build_parser()) == []


def test_model_is_a_trained_model_everywhere_and_arch_the_network_to_train() -> None:
    commands = _subcommands(build_parser())
    takes_model = {c for c, sub in commands.items() for a in _options(sub) if "--model" in a.option_strings}
    assert takes_model == {"evaluate", "predict", "export", "serve", "radiogenomics"}
    for command in takes_model:
        (action,) = (a for a in _options(commands[command]) if "--model" in a.option_strings)
        assert isinstance(action, argparse._AppendAction) and action.nargs is None, command
        # no positional model besides it
        assert not any(a.dest in ("checkpoint", "model") for a in commands[command]._actions if not a.option_strings)
    takes_arch = {c for c, sub in commands.items() for a in _options(sub) if "--arch" in a.option_strings}
    assert takes_arch == {"train"}


def test_an_ensemble_is_a_repeated_model(tmp_path) -> None:
    args = build_parser().parse_args(["predict", "x.png", "--model", "a.pt", "--model", "b.pt", "--out", "o"])
    assert args.model == ["a.pt", "b.pt"] and args.inputs == ["x.png"]
    with pytest.raises(SystemExit):  # the old positional model is gone
        build_parser().parse_args(["evaluate", "a.pt"])


@pytest.mark.parametrize(
    ("argv", "dest", "value"),
    [
        (["train", "--tta"], "tta", True),
        (["train", "--no-largest-component"], "largest_component", False),
        (["evaluate", "--model", "m.pt", "--no-figures"], "figures", False),
        (["predict", "x", "--model", "m.pt", "--out", "o", "--no-overlays"], "overlays", False),
        (["radiogenomics", "d", "--no-figures"], "figures", False),
        (["study", "s.yaml", "--no-wait"], "wait", False),
        (["train", "--resume"], "resume", True),
        (["train", "--resume-from", "runs/a"], "resume_from", "runs/a"),
    ],
)
def test_booleans_are_on_off_switches(argv: list[str], dest: str, value: object) -> None:
    assert getattr(build_parser().parse_args(argv), dest) == value


def test_the_old_spellings_are_gone() -> None:
    for argv in (
        ["train", "--model", "unet"],
        ["train", "--tta", "true"],
        ["evaluate", "--model", "m.pt", "--patients", "a,b"],
        ["radiogenomics", "d", "--config", "unet__dice"],
        ["serve", "m.pt"],
        ["export", "m.pt"],
    ):
        with pytest.raises(SystemExit):
            build_parser().parse_args(argv)


# ------------------------------------------------------------------ the checker catches bad parsers
def _parser_with(build) -> argparse.ArgumentParser:  # noqa: ANN001 - a function adding bad sub-commands
    parser = argparse.ArgumentParser(prog="gliomaseg")
    sub = parser.add_subparsers(dest="command")
    build(sub)
    return parser


def _good(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    return add_command(sub, name, help="a command", example=f"gliomaseg {name} --out x")


def test_the_checker_passes_a_good_parser() -> None:
    def build(sub: argparse._SubParsersAction) -> None:
        for name in ("a", "b"):
            p = _good(sub, name)
            add_model_flag(p)
            add_out_flag(p, f"{name}'s folder")
            p.add_argument("--figures", action=argparse.BooleanOptionalAction, default=True, help="draw figures")

    assert grammar_problems(_parser_with(build)) == []


def _two_meanings_of_a_flag(sub: argparse._SubParsersAction) -> None:
    _good(sub, "synth").add_argument("--patients", type=int, help="number of patients")
    _good(sub, "evaluate").add_argument("--patients", help="number of patients: ids to draw")


def _same_kind_other_meaning(sub: argparse._SubParsersAction) -> None:
    _good(sub, "train").add_argument("--config", help="YAML file of settings")
    _good(sub, "radiogenomics").add_argument("--config", help="configuration name of the study's runs")


def _model_as_architecture(sub: argparse._SubParsersAction) -> None:
    add_model_flag(_good(sub, "predict"))
    _good(sub, "train").add_argument("--model", help="network")


def _lone_negative(sub: argparse._SubParsersAction) -> None:
    _good(sub, "evaluate").add_argument("--no-figures", action="store_true", help="skip figures")


def _true_false_value(sub: argparse._SubParsersAction) -> None:
    _good(sub, "train").add_argument("--tta", choices=["true", "false"], help="flip TTA")


def _parse_bool_type(sub: argparse._SubParsersAction) -> None:
    def parse_bool(text: str) -> bool:
        return text == "true"

    _good(sub, "train").add_argument("--tta", type=parse_bool, metavar="{true,false}", help="flip TTA")


def _no_example(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("models", help="list models")


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (_two_meanings_of_a_flag, "--patients has 2 meanings"),
        (_same_kind_other_meaning, "--config is taken by 2 commands but has no meaning"),
        (_model_as_architecture, "--model has 2 meanings"),
        (_lone_negative, "a lone --no-x switch"),
        (_true_false_value, "a boolean given as a value"),
        (_parse_bool_type, "a boolean given as a value"),
        (_no_example, "models: --help has no example line"),
    ],
    ids=["two-kinds", "same-kind-two-meanings", "model-as-arch", "lone-no-x", "true-false", "parse-bool", "no-example"],
)
def test_the_checker_catches_a_bad_parser(build, expected: str) -> None:  # noqa: ANN001
    problems = grammar_problems(_parser_with(build))
    assert any(expected in p for p in problems), problems


def test_a_meaning_mismatch_in_the_help_is_caught() -> None:
    def build(sub: argparse._SubParsersAction) -> None:
        _good(sub, "explore").add_argument("--out", help="where to write: the folder")
        _good(sub, "index").add_argument("--out", help="index file")

    assert any("index --out: help 'index file' does not start" in p for p in grammar_problems(_parser_with(build)))


# ---------------------------------------------------------------------------------- --help is fast
def test_help_is_fast_and_imports_no_heavy_library() -> None:
    code = (
        "import sys, contextlib, io\nfrom gliomaseg.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n    main(['--help'])\n"
        "print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr
    loaded = set(eval(done.stdout.strip().splitlines()[-1]))  # noqa: S307 - our own printed list
    assert not loaded & {"torch", "sklearn", "monai", "lightning", "cv2", "pandas", "scipy"}, loaded
    assert seconds < 10  # about 0.2 s; generous for a loaded machine, the import check above is the strict one


def test_help_of_each_command_but_train_is_fast_too() -> None:
    """Only ``train --help`` lists choices that need torch (the networks, losses); the others import nothing heavy."""
    from gliomaseg.cli.evaluate import SPLIT_PARTS
    from gliomaseg.data.splits import PARTS

    assert SPLIT_PARTS == PARTS
    code = (
        "import sys, contextlib, io\nfrom gliomaseg.cli import main\nfor c in sys.argv[1:]:\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        main([c, '--help'])\n"
        "print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    commands = sorted(set(_subcommands(build_parser())) - {"train"})
    done = subprocess.run([sys.executable, "-c", code, *commands], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    loaded = set(eval(done.stdout.strip().splitlines()[-1]))  # noqa: S307 - our own printed list
    assert not loaded & {"torch", "sklearn", "monai", "lightning", "pandas"}, loaded


def _documented_commands() -> list[tuple[str, str]]:
    """Every ``gliomaseg ...`` line of the README's and docs' shell blocks: (where, the command's words)."""
    import re
    import shlex

    found = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        blocks = re.findall(r"```(?:bash|sh|console)?\n(.*?)```", path.read_text(), re.S)
        for block in blocks:
            for line in block.replace("\\\n", " ").splitlines():
                for part in re.split(r"&&|;|\|", line.split(" #")[0]):
                    words = part.strip().lstrip("$ ").strip()
                    # placeholders (``...``) and shell variables of a loop cannot be parsed as written
                    if words.startswith("gliomaseg ") and "..." not in words and "$" not in words:
                        found.append((path.name, " ".join(shlex.split(words)[1:])))
    return found


def test_every_documented_command_line_parses() -> None:
    """The README and docs show the grammar they describe: each documented command parses as written."""
    import shlex

    documented = _documented_commands()
    assert len(documented) > 30  # the README alone shows dozens
    parser = build_parser()
    wrong = []
    for where, words in documented:
        try:
            parser.parse_args(shlex.split(words))
        except SystemExit:
            wrong.append(f"{where}: gliomaseg {words}")
    assert wrong == [], "\n".join(wrong)
