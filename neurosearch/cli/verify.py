"""``verify``: check an index's files, format and stored results (no model, no torch)."""

import typer

from neurosearch.cli.common import IndexOption, JsonOption, default_index, print_json, state_dir_option


def verify(index: IndexOption = None, as_json: JsonOption = False) -> None:
    """Check every file against the manifest's sha256, the format versions, and that stored results
    (ablations, evaluation, labels, fitted heads) are about what the index holds now. One line per
    problem; exit 1 when there is any."""
    from neurosearch.index.verify import verify_index

    report = verify_index(index or default_index(), state_root=state_dir_option())
    if as_json:
        print_json(report.to_json())
    else:  # plain lines (a script can grep them), outside text made printable
        for problem in report.problems:
            typer.echo(_printable(problem.line()))
        for note in report.notes:
            typer.echo(_printable(f"note: {note}"))
        counts = ", ".join(f"{count} {name.replace('_', ' ')}" for name, count in report.checked.items())
        verdict = "ok" if report.ok else f"{len(report.problems)} problem(s)"
        typer.echo(_printable(f"index {report.index}: {verdict} ({counts or 'nothing checked'})"))
    if not report.ok:
        raise typer.Exit(1)


def _printable(text: str) -> str:
    """Control characters from stored files escaped, so a line stays one line and harmless."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
