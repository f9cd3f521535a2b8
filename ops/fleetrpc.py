"""A small XML-RPC namespace loaded into supervisord: per-program changes inside one group.

supervisord's own ``reloadConfig`` + ``update`` works on whole groups: adding one collector
to ``[group:collector]`` would stop and restart every collector of the group. This namespace
(``fleet.*``, installed by ``[rpcinterface:fleet]`` in ``supervisord.conf``) lets
``python -m ops.fleet apply`` change one program of a group and leave the others, and their
PIDs, alone:

- ``fleet.diffGroup(group)``: after ``supervisor.reloadConfig()``, the programs of ``group``
  that the configuration added, changed or removed, compared with the running group;
- ``fleet.removeProcess(group, name)``: drop a stopped program from the running group;
- ``fleet.addProcess(group, name)``: add a program of the re-read configuration to the
  running group (it starts at once when ``autostart`` is on).

When the running group's programs equal the configuration's, the group takes the new
configuration object, so a later ``reloadConfig`` reports the group unchanged.
This module runs inside supervisord (Python 2-era code base, no structlog): keep it small and
free of imports from the rest of the project.
"""

from __future__ import annotations

from typing import Any

from supervisor.states import STOPPED_STATES
from supervisor.xmlrpc import Faults, RPCError


class FleetNamespaceRPCInterface:
    """``fleet.*`` methods; ``supervisord`` is the running supervisord instance."""

    def __init__(self, supervisord: Any) -> None:
        self.supervisord = supervisord

    def _group(self, group: str) -> Any:
        found = self.supervisord.process_groups.get(group)
        if found is None:
            raise RPCError(Faults.BAD_NAME, group)
        return found

    def _new_config(self, group: str) -> Any:
        for config in self.supervisord.options.process_group_configs:
            if config.name == group:
                return config
        return None

    def _adopt_if_equal(self, group: Any, new: Any) -> None:
        if new is None:
            return
        have = {c.name: c for c in group.config.process_configs}
        want = {c.name: c for c in new.process_configs}
        if have.keys() == want.keys() and all(have[n] == want[n] for n in want):
            group.config = new
            for name, process in group.processes.items():
                process.config = want[name]

    def diffGroup(self, group: str) -> dict[str, list[str]]:  # noqa: N802 - XML-RPC name
        """Programs of ``group`` added/changed/removed by the last reloadConfig.

        @param string group   name of a running process group
        @return struct result {"added": [...], "changed": [...], "removed": [...]}
        """
        running = self._group(group)
        new = self._new_config(group)
        have = {c.name: c for c in running.config.process_configs}
        want = {} if new is None else {c.name: c for c in new.process_configs}
        return {
            "added": sorted(want.keys() - have.keys()),
            "changed": sorted(n for n in want.keys() & have.keys() if want[n] != have[n]),
            "removed": sorted(have.keys() - want.keys()),
        }

    def removeProcess(self, group: str, name: str) -> bool:  # noqa: N802 - XML-RPC name
        """Remove a stopped program from a running group.

        @param string group  name of the process group
        @param string name   name of the program inside the group
        @return boolean result  true once removed
        """
        running = self._group(group)
        process = running.processes.get(name)
        if process is None:
            raise RPCError(Faults.BAD_NAME, f"{group}:{name}")
        if process.get_state() not in STOPPED_STATES:
            raise RPCError(Faults.STILL_RUNNING, f"{group}:{name}")
        del running.processes[name]
        running.config.process_configs = [
            c for c in running.config.process_configs if c.name != name
        ]
        self._adopt_if_equal(running, self._new_config(group))
        return True

    def addProcess(self, group: str, name: str) -> bool:  # noqa: N802 - XML-RPC name
        """Add a program of the re-read configuration to a running group.

        @param string group  name of the process group
        @param string name   name of the program inside the group
        @return boolean result  true once added
        """
        running = self._group(group)
        if name in running.processes:
            raise RPCError(Faults.ALREADY_ADDED, f"{group}:{name}")
        new = self._new_config(group)
        pconfig = None
        if new is not None:
            pconfig = next((c for c in new.process_configs if c.name == name), None)
        if pconfig is None:
            raise RPCError(Faults.BAD_NAME, f"{group}:{name}")
        pconfig.create_autochildlogs()
        running.processes[name] = pconfig.make_process(running)
        running.config.process_configs = [*running.config.process_configs, pconfig]
        self._adopt_if_equal(running, new)
        return True


def make_interface(supervisord: Any, **config: Any) -> FleetNamespaceRPCInterface:
    """The ``supervisor.rpcinterface_factory`` of ``[rpcinterface:fleet]``."""
    return FleetNamespaceRPCInterface(supervisord)
