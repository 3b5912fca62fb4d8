"""``nbjobs runtimes``: list, add, change, remove and check the runtimes in a data directory's database."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from nbjobs.cli.options import data_dir_option
from nbjobs.errors import NbJobsError
from nbjobs.service.authz import OPERATOR

if TYPE_CHECKING:  # imported where used, to keep `nbjobs --help` fast
    from nbjobs.models.runtimes import RuntimeSpec
    from nbjobs.roots.operator import Operator
    from nbjobs.service.runtimes.fields import RuntimeFields
    from nbjobs.service.runtimes.registry import RuntimeService

_data_dir = data_dir_option


def _service(data_dir: Path | None) -> tuple[RuntimeService, Operator]:
    from nbjobs.roots.operator import Operator
    from nbjobs.settings import load_settings

    operator = Operator.open(load_settings(data_dir=data_dir))
    operator.runtimes.ensure_default()
    return operator.runtimes, operator


def _limit_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--python", help="Absolute path of the environment's interpreter (needs ipykernel)."),
        click.option("--image-id", help="An installed Jupyter kernelspec name, instead of --python."),
        click.option("--version", "runtime_version", help="The runtime's version label (default 11.0)."),
        click.option("--max-cpu", type=float, help="CPUs (0 = no limit)."),
        click.option("--max-memory", type=float, help="Memory, in --max-memory-unit (0 = no limit)."),
        click.option("--max-memory-unit", type=click.Choice(["b", "k", "m", "g"], case_sensitive=False)),
        click.option("--max-swap-memory", type=float, help="Swap beyond memory (0 = none)."),
        click.option("--max-swap-memory-unit", type=click.Choice(["b", "k", "m", "g"], case_sensitive=False)),
        click.option("--max-wall-minutes", type=float, help="Wall-time cap (0 = the server maximum)."),
        click.option(
            "--max-output-bytes", type=int, help="Output cap per notebook (0 = the server default)."
        ),
        click.option("--advanced/--standard", default=None, help="Require the advanced-notebooks privilege."),
        click.option("--disabled/--enabled", default=None, help="Refuse new jobs on this runtime."),
        click.option(
            "--preload",
            metavar="MODULES",
            help="Modules a fork template imports once, comma-separated (e.g. pandas,numpy); '' clears.",
        ),
        click.option(
            "--start-method",
            type=click.Choice(["fork", "spawn"], case_sensitive=False),
            help="fork: kernels forked from a pre-imported template (default); spawn: an ipykernel each.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _fields(name: str | None, **opts: Any) -> RuntimeFields:
    from nbjobs.service.runtimes.fields import RuntimeFields

    return RuntimeFields(
        name=name,
        python=opts["python"],
        image_id=opts["image_id"],
        version=opts["runtime_version"],
        max_cpu=opts["max_cpu"],
        max_memory=opts["max_memory"],
        max_memory_unit=opts["max_memory_unit"],
        max_swap_memory=opts["max_swap_memory"],
        max_swap_memory_unit=opts["max_swap_memory_unit"],
        max_wall_minutes=opts["max_wall_minutes"],
        max_output_bytes=opts["max_output_bytes"],
        requires_advanced_privileges=opts["advanced"],
        disabled=opts["disabled"],
        preload=_modules(opts["preload"]),
        start_method=opts["start_method"],
    )


def _modules(raw: str | None) -> tuple[str, ...] | None:
    """``--preload``: comma-separated module names; '' is none (clears on update); None when not given."""
    if raw is None:
        return None
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _start(spec: RuntimeSpec) -> str:
    """A runtime's start method, preload and reported start status, for ``list``."""
    status = spec.start_status
    reported = "not reported" if status is None else status.state
    if status is not None and status.reason:
        reported += f" ({' '.join(status.reason.split())})"  # one line, no tabs
    return f"{spec.start_method}\t{','.join(spec.preload) or '-'}\t{reported}"


@click.group()
def runtimes() -> None:
    """Runtimes: a kernelspec in a Python environment, plus limits."""


@runtimes.command("list")
@_data_dir
def list_runtimes(data_dir: Path | None) -> None:
    """List runtimes: id, name, kernel, python, flags, start method, preload, start status."""
    service, store = _service(data_dir)
    try:
        for spec in service.list():
            flags = [
                flag
                for flag, on in (
                    ("default", spec.is_default),
                    ("advanced", spec.requires_advanced_privileges),
                    ("disabled", spec.disabled),
                )
                if on
            ]
            python = service.python_of(spec)
            click.echo(
                f"{spec.runtime_id}\t{spec.name}\t{spec.kernel_name}\t{python}\t{','.join(flags)}"
                f"\t{_start(spec)}"
            )
    finally:
        store.close()


@runtimes.command("add")
@click.option("--name", required=True, help="A unique name.")
@_limit_options
@_data_dir
def add(name: str, data_dir: Path | None, **opts: Any) -> None:
    """Register a runtime running in another Python environment (--python) or kernelspec (--image-id)."""
    service, store = _service(data_dir)
    try:
        spec = service.register(OPERATOR, _fields(name, **opts))
    except NbJobsError as exc:
        raise click.ClickException(exc.message) from exc
    finally:
        store.close()
    click.echo(f"added {spec.name} ({spec.runtime_id}, kernel {spec.kernel_name})")


@runtimes.command("update")
@click.argument("runtime")
@click.option("--name", help="A new unique name.")
@_limit_options
@_data_dir
def update(runtime: str, name: str | None, data_dir: Path | None, **opts: Any) -> None:
    """Change RUNTIME (an id or a name); options not given stay as they are."""
    service, store = _service(data_dir)
    try:
        spec = service.update(OPERATOR, service.lookup(runtime).runtime_id, _fields(name, **opts))
    except NbJobsError as exc:
        raise click.ClickException(exc.message) from exc
    finally:
        store.close()
    click.echo(f"updated {spec.name} ({spec.runtime_id})")


@runtimes.command("remove")
@click.argument("runtime")
@_data_dir
def remove(runtime: str, data_dir: Path | None) -> None:
    """Unregister RUNTIME (an id or a name); jobs keep the runtime they recorded."""
    service, store = _service(data_dir)
    try:
        spec = service.unregister(OPERATOR, service.lookup(runtime).runtime_id)
    except NbJobsError as exc:
        raise click.ClickException(exc.message) from exc
    finally:
        store.close()
    click.echo(f"removed {spec.name} ({spec.runtime_id})")


@runtimes.command("validate")
@_data_dir
def validate(data_dir: Path | None) -> None:
    """Check that every runtime's python runs and imports ipykernel; exit 1 if one cannot."""
    service, store = _service(data_dir)
    try:
        checks = service.validate()
    finally:
        store.close()
    for check in checks:
        state = (
            f"ok\t{check.python_version.split()[0] if check.python_version else ''}" if check.ok else "FAILED"
        )
        detail = "" if check.ok else f"\t{check.error}"
        click.echo(f"{check.runtime.runtime_id}\t{check.runtime.name}\t{state}{detail}")
    if any(not c.ok for c in checks):
        raise SystemExit(1)
