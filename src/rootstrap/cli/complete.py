"""Shell completion: ``rootstrap completion bash|zsh|fish`` prints a script, and the script
calls the hidden ``rootstrap __complete WORD... CURRENT`` for the candidates of CURRENT.

Everything comes from the registry (cli/verbs.py) and the option table (cli/options.py):
verbs, each verb's options and their choices, and what a verb's bare words are: image names
(from the store, ``--store`` honoured) or machine names (the registry of running machines,
runner/registry.py). Typer verbs' options are read from their typer commands, only when an
option is being completed (importing typer costs 0.1-0.3 s; everything else here is lean).
No candidates means "a file name": each script falls back to its shell's file completion.
"""

from __future__ import annotations

from rootstrap.cli.options import GLOBAL, Globals, parse, table
from rootstrap.cli.verbs import BY_NAME, VERBS
from rootstrap.errors import RootstrapError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootstrap.cli.options import Opt
    from rootstrap.cli.verbs import Verb

# Verbs whose words after the image (or the machine) are a command: nothing to complete there.
_COMMAND_VERBS = frozenset({"run", "boot", "show", "shell"})

BASH = r"""# rootstrap(1) completion for bash: eval "$(rootstrap completion bash)"
_rootstrap()
{
    local cmd=${COMP_WORDS[0]/#\~/$HOME}
    local IFS=$'\n'
    COMPREPLY=($("$cmd" __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -F _rootstrap rootstrap
"""

ZSH = r"""#compdef rootstrap
# rootstrap(1) completion for zsh: source <(rootstrap completion zsh)  (after compinit)
_rootstrap() {
    local -a candidates
    candidates=("${(@f)$(${words[1]/#\~/$HOME} __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")
    if [[ -n ${candidates[1]} ]]; then
        compadd -a candidates
    else
        _files
    fi
}
compdef _rootstrap rootstrap
"""

FISH = r"""# rootstrap(1) completion for fish: rootstrap completion fish | source
function __rootstrap_complete
    set -l words (commandline -opc)
    set -l cmd $words[1]
    set -e words[1]
    set -l current (commandline -ct)
    set -l out (command $cmd __complete $words $current 2>/dev/null)
    if test (count $out) -gt 0
        printf '%s\n' $out
    else
        __fish_complete_path $current
    end
end
complete -c rootstrap -f -a '(__rootstrap_complete)'
"""

SCRIPTS = {"bash": BASH, "zsh": ZSH, "fish": FISH}


def images(store: str) -> list[str]:
    """The names of the images in STORE (not the hidden ones); none when it cannot be read."""
    from pathlib import Path

    from rootstrap.store import Store

    try:
        return [image.name for image in Store(Path(store)).images(usage=False)]
    except (RootstrapError, OSError):
        return []


def machines() -> list[str]:
    """The names of the running machines."""
    from rootstrap.machines.status import names

    try:
        return names()
    except (RootstrapError, OSError):
        return []


def _typer_options(verb: Verb, sub: str | None) -> dict[str, bool]:
    """Option name -> takes a value, of typer VERB (of its subcommand SUB, for a group)."""
    from rootstrap.cli import app

    command = app.command(verb)
    found = getattr(command, "commands", {}).get(sub) if sub else None
    params = (found or command).params
    out = {"-h": False, "--help": False}
    for param in params:
        if param.param_type_name == "option":
            for name in (*param.opts, *param.secondary_opts):
                out[name] = not getattr(param, "is_flag", False)
    return out


def _values(opt: Opt | None, current: str) -> list[str]:
    """The candidates for OPT's value (none: a file name, or free text)."""
    if opt is None:
        return []
    found = list(opt.choices)
    if opt.key == "signal":
        import signal

        found = [s.name.removeprefix("SIG") for s in signal.Signals]
    return [value for value in found if value.startswith(current)]


def _kind(verb: Verb, position: int) -> str:
    """What VERB's bare word at POSITION is (verbs.py: image, machine, choice:...)."""
    kinds = verb.complete
    if position < len(kinds):
        return kinds[position].removesuffix("...")
    if kinds and kinds[-1].endswith("..."):
        return kinds[-1].removesuffix("...")
    return ""


def _bare(kind: str, current: str, store: str) -> list[str]:
    prefix = ""
    if kind == "machine" and "@" in current:  # shell USER@NAME
        user, _, current = current.rpartition("@")
        prefix = user + "@"
    if kind == "image":
        found = images(store)
    elif kind == "machine":
        found = machines()
    elif kind.startswith("choice:"):
        found = kind.removeprefix("choice:").split(",")
    else:
        return []
    return [prefix + name for name in found if name.startswith(current)]


def candidates(words: list[str]) -> list[str]:
    """The completions of the last of WORDS (the words after ``rootstrap``; the last one is
    being typed and may be empty). bash hands ``--opt=value`` over in three words
    (``--opt``, ``=``, ``value``: '=' is in its COMP_WORDBREAKS); zsh and fish in one."""
    *before, current = words or [""]
    store = Globals().store  # the environment's or the default
    rows = table(GLOBAL)
    i = 0
    while i < len(before):
        word = before[i]
        if not word.startswith("-") or word == "-":
            verb = BY_NAME.get(word)
            return [] if verb is None else _verb_words(verb, before[i + 1 :], current, store)
        key, eq, value = word.partition("=")
        opt = rows.get(key)
        if opt is not None and opt.kind != "flag":
            if not eq:
                i += 1
                if i < len(before) and before[i] == "=":
                    i += 1
                if i == len(before):
                    return []  # the value of --store or --cache-dir: a directory
                value = before[i]
            if opt.key == "store":
                store = value
        i += 1
    if current.startswith("-"):
        return sorted(name for name in rows if name.startswith(current))
    return [v.name for v in VERBS if not v.hidden and v.name.startswith(current)]


def _verb_words(verb: Verb, rest: list[str], current: str, store: str) -> list[str]:
    """The completions of CURRENT after VERB and its words REST."""
    rows = table(verb.options)
    valued = {name: opt.kind not in ("flag", "json") for name, opt in rows.items()}
    if verb.door == "typer" and (current.startswith("-") or any(w[:1] == "-" for w in rest)):
        valued = _typer_options(verb, rest[0] if rest else None)
    position = 0  # bare words so far
    expect: str | None = None  # the option whose value is the next word
    last = ""  # the previous word, when it was an option
    for j, word in enumerate(rest):
        if expect is not None:
            expect = None if word != "=" else expect
            continue
        if word == "=" and last:
            expect, last = last, ""  # bash: --opt = value
            continue
        last = ""
        if word == "--":
            if verb.name in _COMMAND_VERBS or verb.name == "start":
                return []
            position += len(rest) - j - 1
            break
        if word.startswith("-") and word != "-":
            key, eq, _ = word.partition("=")
            if valued.get(key) and not eq:
                expect = key
            last = key
            continue
        position += 1
    if expect is not None:
        if current == "=":  # bash, the cursor right after '='
            return ["=" + value for value in _values(rows.get(expect), "")]
        return _values(rows.get(expect), current)
    if current == "=" and last:
        return ["=" + value for value in _values(rows.get(last), "")]
    if current.startswith("-"):
        key, eq, value = current.partition("=")
        if eq:
            return [f"{key}={v}" for v in _values(rows.get(key), value)]
        return sorted(name for name in valued if name.startswith(current))
    if verb.name in _COMMAND_VERBS:
        # One bare word names the image (the machine, for shell); with -D none does. The
        # words after it are the command's.
        directory = any(w in ("-D", "--directory") or w.startswith("--directory=") for w in rest)
        if position >= (0 if directory and verb.name != "shell" else 1):
            return []
    return _bare(_kind(verb, position), current, store)


def main(verb: str, args: list[str], g: Globals) -> int:
    if verb == "__complete":
        for candidate in candidates(args):
            print(candidate)
        return 0
    entry = BY_NAME[verb]
    p = parse(verb, args, entry.options)
    if p.help:
        text = (
            "Print the completion script of SHELL; load it with\n"
            '  bash: eval "$(rootstrap completion bash)"   (e.g. in ~/.bashrc)\n'
            "  zsh:  source <(rootstrap completion zsh)    (after compinit)\n"
            "  fish: rootstrap completion fish | source\n"
        )
        print(entry.usage(text), end="")
        return 0
    shells = p.names()
    if len(shells) != 1 or shells[0] not in SCRIPTS:
        raise UsageError(
            "completion takes one shell: bash, zsh or fish",
            subject=" ".join(shells) or None,
            hint=entry.synopsis,
        )
    print(SCRIPTS[shells[0]], end="")
    return 0
