"""``healthway mllp-peer ...``: the networks (and client certificates) a source's MLLP connections come from."""

from __future__ import annotations

from typing import Annotated

import typer

from healthway.cli import EnvFilter, JsonFlag, OrgOption, app, database_session, emit, fail
from healthway.domain.actors import CLI
from healthway.services import mllp_peers, sources
from healthway.services.paging import EnvironmentScope, every

peer_app = typer.Typer(help="MLLP peers: the client networks of a source's MLLP connections.", no_args_is_help=True)
app.add_typer(peer_app, name="mllp-peer")


@peer_app.command("add")
def peer_add(
    source_id: Annotated[str, typer.Option("--source", help="The source these connections speak for.")],
    cidr: Annotated[str, typer.Option("--cidr", help="A network such as 10.1.2.0/24, or one address.")],
    client_cert_sha256: Annotated[
        str | None,
        typer.Option("--client-cert-sha256", help="Also require a TLS client certificate with this SHA-256."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Allow MLLP connections from a network, for one source."""
    with database_session() as session:
        found = sources.find(session, source_id)
        if found is None:
            fail(f"no source {source_id}")
        source, environment = found
        peer = mllp_peers.add(
            session, actor=CLI, source=source, environment=environment, cidr=cidr, client_cert_sha256=client_cert_sha256
        )
        result = mllp_peers.view(peer, environment)
    emit(result, as_json=as_json, text=f"MLLP peer {result['cidr']} ({result['id']}) added to source {source_id}")


@peer_app.command("list")
def peer_list(env: EnvFilter = None, org: OrgOption = None, as_json: JsonFlag = False) -> None:
    """MLLP peers, of one environment or of all three."""
    scope = EnvironmentScope(org, env)
    with database_session() as session:
        views = every(lambda cursor: mllp_peers.list_page(session, actor=CLI, scope=scope, cursor=cursor))
    lines = [f"{v['id']}  {v['environment']:<11}  {v['source_id']}  {v['cidr']}" for v in views]
    emit({"mllp_peers": views}, as_json=as_json, text="\n".join(lines) or "no MLLP peers")


@peer_app.command("remove")
def peer_remove(peer_id: Annotated[str, typer.Argument(help="The peer's ID.")]) -> None:
    """Stop allowing a network (connections already open stay open until they close)."""
    with database_session() as session:
        found = mllp_peers.find(session, peer_id)
        if found is None:
            fail(f"no MLLP peer {peer_id}")
        peer, environment = found
        mllp_peers.remove(session, actor=CLI, peer=peer, environment=environment)
    typer.echo(f"removed MLLP peer {peer_id}")
