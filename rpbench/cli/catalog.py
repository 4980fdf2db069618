"""Commands that list what can be measured: `rpbench list` and `rpbench suites`."""
from __future__ import annotations

from rich.text import Text

from .app import command, console, err_console
from .options import with_width


@command("list")
@with_width
def list_mechanisms() -> None:
    """The attention mechanisms (origin, paper, cost, knobs with defaults and what they do, state-dict
    compatibility), installed plugins among them, and the backbones. A plugin that cannot be loaded is one line
    naming it and the reason."""
    import attentions

    from .. import backbones
    from ..views.catalog import backbones_table, knobs_table, mechanisms_table

    specs = [attentions.spec(name) for name in attentions.available()]
    console.print(mechanisms_table(specs, attentions.FLOP_CONVENTION))
    console.print(knobs_table(specs))
    console.print(backbones_table([backbones.spec(name) for name in backbones.available()]))
    for plugin, reason in attentions.plugin_failures().items():
        err_console.print(Text(f"warning: plugin {plugin} failed to load: {reason}", style="yellow"), soft_wrap=True)


@command()
@with_width
def suites() -> None:
    """The shipped suites, one line each."""
    from ..core.errors import SuiteError
    from ..suites import load_suite, shipped_suites
    from ..views.catalog import suites_table

    entries = []
    for name, path in shipped_suites().items():
        try:
            loaded = load_suite(path, device_override="cpu")
            entries.append((name, len(loaded.cases), loaded.description))
        except SuiteError as err:
            entries.append((name, None, str(err)))
    console.print(suites_table(entries))
