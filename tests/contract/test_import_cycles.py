"""No import cycle among the use cases: a module that two need lives where both can import it
(as services.account_state holds an account's plan and MRR for accounts and signals)."""

from __future__ import annotations

import grimp


def test_the_service_modules_import_each_other_without_a_cycle() -> None:
    graph = grimp.build_graph("service")
    modules = sorted(m for m in graph.modules if m.startswith("service.services."))
    imports = {
        module: {
            imported
            for imported in graph.find_modules_directly_imported_by(module)
            if imported.startswith("service.services.")
        }
        for module in modules
    }
    cycles = []
    for module, targets in imports.items():
        for imported in targets:
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back is not None and all(step.startswith("service.services.") for step in back):
                cycles.append((module, imported))
    assert not cycles, f"import cycles among service.services: {cycles}"
