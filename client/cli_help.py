"""What `corrigo ... --help` shows after the flags: an example of each command, and the
exit statuses every command shares. (Tests check every command has its example.)"""

from __future__ import annotations

EXIT_STATUSES = """exit status:
  0    done
  1    an error: what the server answered (CODE: message; what to do), or a file,
       database or address that cannot be used
  2    a usage error: arguments that are missing, unknown or out of range
  130  interrupted (Ctrl-C); an export or sync run again resumes where it stopped"""

# Keyed by the command's `prog`; the README tour's names (project support, source
# support/emails, dataset support/example).
EXAMPLES = {
    "corrigo": "corrigo projects list",
    "corrigo serve": "CORRIGO_LISTEN=127.0.0.1:50052 corrigo serve --database sqlite:///corrigo.sqlite3",
    "corrigo migrate": "corrigo migrate --database postgresql://corrigo@db/corrigo",
    "corrigo admin": "corrigo admin bootstrap --org acme --email admin@acme.example",
    "corrigo admin bootstrap": "corrigo admin bootstrap --org acme --email admin@acme.example",
    "corrigo admin token": "corrigo admin token --org acme --email admin@acme.example",
    "corrigo whoami": "corrigo whoami --json",
    "corrigo completion": "corrigo completion bash > ~/.local/share/bash-completion/completions/"
    "corrigo",
    "corrigo export": "corrigo export support/example -o example.jsonl --from 2024-05-02T00:00:00Z",
    "corrigo sync": "corrigo sync support/emails comments.jsonl",
    "corrigo import": "corrigo import support/copy example.jsonl --new-model Triage",
    "corrigo projects": "corrigo projects list --json",
    "corrigo projects list": "corrigo projects list --json",
    "corrigo projects show": "corrigo projects show support",
    "corrigo projects create": 'corrigo projects create support --title "Support mail"',
    "corrigo projects delete": "corrigo projects delete support",
    "corrigo users": "corrigo users list",
    "corrigo users list": "corrigo users list --json",
    "corrigo users show": "corrigo users show ann@acme.example",
    "corrigo users create": "corrigo users create ann@acme.example --display-name Ann",
    "corrigo members": "corrigo members list support",
    "corrigo members list": "corrigo members list support",
    "corrigo members create": "corrigo members create support ann@acme.example annotator",
    "corrigo members delete": "corrigo members delete support ann@acme.example",
    "corrigo tokens": "corrigo tokens list",
    "corrigo tokens list": "corrigo tokens list --user ann@acme.example",
    "corrigo tokens create": "corrigo tokens create --user ann@acme.example --description laptop",
    "corrigo tokens delete": "corrigo tokens delete 3",
    "corrigo sources": "corrigo sources list support",
    "corrigo sources list": "corrigo sources list support",
    "corrigo sources show": "corrigo sources show support/emails --json",
    "corrigo sources create": 'corrigo sources create support/emails --title "Support inbox"',
    "corrigo sources delete": "corrigo sources delete support/emails",
    "corrigo datasets": "corrigo datasets list support",
    "corrigo datasets list": "corrigo datasets list support",
    "corrigo datasets show": "corrigo datasets show support/example",
    "corrigo datasets create": "corrigo datasets create support/example --source emails",
    "corrigo datasets delete": "corrigo datasets delete support/example",
    "corrigo labels": "corrigo labels list support/example",
    "corrigo labels list": "corrigo labels list support/example",
    "corrigo labels create": 'corrigo labels create support/example "Seats" "Seats > Comfort"',
    "corrigo labels delete": 'corrigo labels delete support/example "Seats > Comfort"',
    "corrigo labels import": "corrigo labels import support/example labellings.jsonl",
    "corrigo models": "corrigo models list support/example",
    "corrigo models list": "corrigo models list support/example",
    "corrigo models show": "corrigo models show support/example 1",
    "corrigo models create": "corrigo models create support/example Triage --type label",
    "corrigo models version": "corrigo models version support/example 1 --score 0.87",
    "corrigo models tag": "corrigo models tag support/example prod 1",
    "corrigo models tags": "corrigo models tags support/example",
    "corrigo groups": "corrigo groups list support",
    "corrigo groups list": "corrigo groups list support",
    "corrigo groups show": "corrigo groups show support 1",
    "corrigo groups create": "corrigo groups create support seats 0123456789abcdef.c5",
    "corrigo groups delete": "corrigo groups delete support 1",
    "corrigo sessions": "corrigo sessions list support",
    "corrigo sessions create": "corrigo sessions create support 1 --sample-size 3 --watch",
    "corrigo sessions watch": "corrigo sessions watch support 1 --json",
    "corrigo sessions list": "corrigo sessions list support --status annotating",
    "corrigo practice": "corrigo practice list",
    "corrigo practice list": "corrigo practice list --limit 5",
    "corrigo practice show": "corrigo practice show 1 --events",
    "corrigo improve": "corrigo improve 1",
    "corrigo batch": "corrigo batch list",
    "corrigo batch sessions": "corrigo batch sessions --after 2 -o batch.parquet --format parquet",
    "corrigo batch release": "corrigo batch release release-2024-06",
    "corrigo batch list": "corrigo batch list --json",
}


def epilog(prog: str) -> str:
    """The text after a command's flags: its example (the root's lists exit statuses too)."""
    example = EXAMPLES.get(prog)
    text = f"example:\n  {example}\n" if example else ""
    return text + (f"\n{EXIT_STATUSES}\n" if prog == "corrigo" else "")
