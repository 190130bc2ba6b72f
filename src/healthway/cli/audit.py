"""``healthway audit ...``"""

from __future__ import annotations

import typer

from healthway.cli import app, database_session, fail
from healthway.services import audit

audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the hash chain of every audit event: exit 0 when intact, 1 naming the first broken event."""
    with database_session() as session:
        report = audit.verify_chain(session)
    if not report.ok:
        fail(f"audit chain broken at event {report.first_broken_id} (event {report.events} in order)")
    typer.echo(f"audit chain intact: {report.events} events")
