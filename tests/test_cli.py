"""The command line as a new user meets it: help without a command, an example in every
command's --help, and a wheel that installs the `tf1-repro` console script."""

import configparser
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import support
from tf1_repro import cli
from tf1_repro.graph.errors import InputError


def _commands():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # pylint: disable=protected-access
    return sub.choices


def test_no_command_prints_the_help_and_says_where_to_start():
    done = subprocess.run([sys.executable, "-m", "tf1_repro"], capture_output=True, text=True,
                          cwd=support.ROOT, timeout=120)
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith("usage: python -m tf1_repro [-h] COMMAND ...")
    assert "Start with:  python -m tf1_repro demo" in done.stdout
    assert "thin argparse shells" not in done.stdout


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_command_help_ends_with_an_example(name):
    text = _commands()[name].format_help().rstrip().splitlines()
    assert text[-2] == "example:", f"{name}: add an entry to cli.EXAMPLES"
    assert text[-1].strip().startswith(f"python -m tf1_repro {name}")


def test_quiet_flag_on_the_long_commands():
    commands = _commands()
    for name in ("train", "bench", "experiment", "to-inference", "bench-inference"):
        assert "--quiet" in commands[name].format_help(), name


def test_wheel_declares_console_script_dependencies_and_every_subpackage(tmp_path):
    source = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(os.path.join(support.ROOT, "tf1_repro"), source / "tf1_repro",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(support.ROOT, name), source / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                           "--no-build-isolation", "--wheel-dir", str(tmp_path), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("tf1_repro-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        entry_points = configparser.ConfigParser()
        entry_points.read_string(z.read(info).decode())
        metadata = z.read(info.replace("entry_points.txt", "METADATA")).decode()
    assert entry_points["console_scripts"]["tf1-repro"] == "tf1_repro.cli:main"
    packages = {os.path.dirname(n) for n in names if n.startswith("tf1_repro/") and n.endswith(".py")}
    assert packages == {"tf1_repro", "tf1_repro/layers", "tf1_repro/model", "tf1_repro/experiments",
                        "tf1_repro/tools", "tf1_repro/graph", "tf1_repro/comparisons", "tf1_repro/bench"} | {p for p in packages if p.count("/") > 1}
    requires = {line.split(":", 1)[1].strip().split(" ")[0].split(">")[0].split("<")[0]
                for line in metadata.splitlines() if line.startswith("Requires-Dist:")
                and "extra ==" not in line}
    assert {"tensorflow", "tf-keras", "numpy", "scikit-learn", "tqdm"} <= requires


def test_installed_console_script_runs_the_same_cli():
    script = os.path.join(os.path.dirname(sys.executable), "tf1-repro")
    if not os.path.exists(script):
        pytest.skip("the package is not installed in this environment (make installs it editable)")
    done = subprocess.run([script, "experiment", "--list"], capture_output=True, text=True,
                          timeout=120)
    same = subprocess.run([sys.executable, "-m", "tf1_repro", "experiment", "--list"],
                          capture_output=True, text=True, cwd=support.ROOT, timeout=120)
    assert done.returncode == 0 and done.stdout == same.stdout and "train-vs-inference" in done.stdout


@pytest.mark.slow
def test_train_progress_lines_off_a_terminal_and_quiet_turns_them_off(tmp_path):
    def train(out, *extra):
        return subprocess.run([sys.executable, "-m", "tf1_repro", "train", "--steps", "20", "--out",
                               str(tmp_path / out), *extra], capture_output=True, text=True,
                              cwd=support.ROOT, timeout=300)
    shown, quiet = train("a"), train("b", "--quiet")
    assert shown.returncode == 0 and quiet.returncode == 0, shown.stderr + quiet.stderr
    lines = [l for l in shown.stderr.splitlines() if l.startswith("train: ")]
    # a line at each 10% of 20 steps: 2, 4, ..., 20
    assert [l.split()[1] for l in lines] == [f"{k}/20" for k in range(2, 21, 2)]
    assert "step/s" in lines[0] and "ETA" in lines[0] and "done in" in lines[-1] and "loss=" in lines[-1]
    assert "train: " not in quiet.stderr and quiet.stdout.count("step ") == shown.stdout.count("step ")


@pytest.mark.parametrize("command", [["find", "runs/none"], ["doctor", "runs/none"],
                                     ["recalibrate", "runs/none", "--data", "x.npz", "--out", "o"]])
def test_json_into_a_missing_directory_is_refused_before_any_work(command, tmp_path, capsys):
    target = tmp_path / "missing" / "report.json"
    code = cli.main(command + ["--json", str(target)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == (f"python -m tf1_repro {command[0]}: error: --json {target}: its directory "
                   f"'{tmp_path / 'missing'}' does not exist")


# A path that does not exist, given to each tool that reads users' saved models: the tool's own
# error (a subclass of InputError) reaches main, which prints one line and exits 2.
MISSING = "/nonexistent/model"
MISSING_PATH = {
    "find": (["find", MISSING], "python -m tf1_repro find: /nonexistent/model: no such file or "
             "checkpoint prefix"),
    "doctor": (["doctor", MISSING], "python -m tf1_repro doctor: /nonexistent/model: no such file "
               "or checkpoint prefix"),
    "to-inference": (["to-inference", MISSING, "--outputs", "logits", "--out", "{tmp}/serving"],
                     "python -m tf1_repro to-inference: error: PATH: /nonexistent/model: no such "
                     "file or checkpoint prefix"),
    "recalibrate": (["recalibrate", MISSING, "--data", "{tmp}/data.npz", "--out", "{tmp}/recal"],
                    "python -m tf1_repro recalibrate: PATH must be a checkpoint prefix (PREFIX.index "
                    "exists) or a directory, got '/nonexistent/model'"),
    "migrate": (["migrate", MISSING, "--to", "keras3", "--out", "{tmp}/keras3"],
                "python -m tf1_repro migrate: PATH must be a TF1 checkpoint (prefix, directory or "
                ".meta), got /nonexistent/model: no such file or checkpoint prefix"),
}


@pytest.mark.parametrize("name", list(MISSING_PATH))
def test_a_missing_model_path_is_one_line_and_exit_2(name, tmp_path, capsys):
    np.savez(tmp_path / "data.npz", x=np.zeros((4, 2), np.float32))
    argv, line = MISSING_PATH[name]
    code = cli.main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0] == line
    assert not any(p.name != "data.npz" for p in tmp_path.iterdir())  # nothing written


def test_an_input_error_is_printed_in_its_commands_form():
    parser = cli.build_parser()
    forms = {name: cli._error_line(parser.parse_args(argv), InputError("MESSAGE"))  # pylint: disable=protected-access
             for name, argv in {"doctor": ["doctor", "p"], "find": ["find", "p"],
                                "to-inference": ["to-inference", "p", "--outputs", "o", "--out", "d"],
                                "audit": ["audit", "f.py:g"]}.items()}
    assert forms == {"doctor": "python -m tf1_repro MESSAGE", "find": "python -m tf1_repro find: MESSAGE",
                     "to-inference": "python -m tf1_repro to-inference: error: MESSAGE",
                     "audit": "MESSAGE"}
    assert cli._error_line(parser.parse_args(["doctor", "p"]),  # pylint: disable=protected-access
                           cli.UsageError("a whole line")) == "a whole line"
