"""The deployment lifecycle: pre-prod islands, blue/green through the Dealer, post-prod and rollback.

Modules (import what you need; this package imports nothing at start-up):

* :mod:`~squals_action.lifecycle.machine` -- the pure state machine (``Status``, ``Event``, ``step``,
  ``apply``, ``invariants``, ``weights``) and the ``Env`` record stored as ``environments/<name>.json``;
* :mod:`~squals_action.lifecycle.engine` -- ``Lifecycle(repo, manifest, store, provider, traffic, log_dir)``
  with ``deploy(pr, commit)``, ``promote(pr)``, ``rollback(pr=None)``, ``teardown(pr)``, ``down()``, each
  returning an ``Outcome``; built from :mod:`~squals_action.lifecycle.steps` (the steps every command shares),
  :mod:`~squals_action.lifecycle.promote` (blue/green promotion) and :mod:`~squals_action.lifecycle.records`
  (state documents to ``Env`` and back);
* :mod:`~squals_action.lifecycle.kpi` and :mod:`~squals_action.lifecycle.bake` -- the KPI judgement and the
  bake loop; :mod:`~squals_action.lifecycle.hooks` -- hooks and tests as ``Check`` values;
* :mod:`~squals_action.lifecycle.traffic` -- the local Dealer behind the ``Traffic`` protocol;
* :mod:`~squals_action.lifecycle.source` -- ``checkout(repo, commit, manifest)``: the files of the commit a
  command records (a temporary worktree), never the working tree's; ``--allow-dirty``'s snapshot;
* :mod:`~squals_action.lifecycle.project` -- ``open_project(options)`` wires a repository for the CLI;
* :mod:`~squals_action.lifecycle.signals` -- the KPI sources a bake reads (the Dealer's tallies, CloudWatch
  with alarms as stop signals).

Rendering (the PR comment's markdown, terminal progress) lives in :mod:`squals_action.report.lifecycle`, and
``squals demo`` in :mod:`squals_action.demo`, above this package.
"""
