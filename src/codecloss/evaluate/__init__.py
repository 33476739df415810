"""Evaluation harness: BAPPS 2AFC/JND, MOS correlations, sanity checks, reference recovery; baselines in one table.

Modules: :mod:`~codecloss.evaluate.scorers` (CPIPS and baselines as distances),
:mod:`~codecloss.evaluate.bapps`, :mod:`~codecloss.evaluate.mos`,
:mod:`~codecloss.evaluate.sanity`, :mod:`~codecloss.evaluate.equal_mse` (benign vs harmful changes at
equal MSE), :mod:`~codecloss.evaluate.recovery` (blind spots),
:mod:`~codecloss.evaluate.report` (tables, JSON, plots).

Example:
    >>> from codecloss.evaluate import build_scorers, evaluate_bapps
    >>> tables = evaluate_bapps("dataset", build_scorers([{"weights": None}]))  # doctest: +SKIP
    >>> print(tables[0].format())  # doctest: +SKIP
"""

from codecloss.evaluate.bapps import evaluate_2afc, evaluate_bapps, evaluate_jnd, score_2afc, score_jnd
from codecloss.evaluate.equal_mse import evaluate_equal_mse
from codecloss.evaluate.mos import correlations, evaluate_mos
from codecloss.evaluate.recovery import RecoveryResult, evaluate_recovery, recover, recovery_scorers
from codecloss.evaluate.report import Row, Table, plot_tables
from codecloss.evaluate.sanity import evaluate_ordered_subset, evaluate_synthetic
from codecloss.evaluate.scorers import Scorer, Skipped, baseline_scorers, build_scorers, cpips_scorer

__all__ = [
    "RecoveryResult",
    "Row",
    "Scorer",
    "Skipped",
    "Table",
    "baseline_scorers",
    "build_scorers",
    "correlations",
    "cpips_scorer",
    "evaluate_2afc",
    "evaluate_bapps",
    "evaluate_equal_mse",
    "evaluate_jnd",
    "evaluate_mos",
    "evaluate_ordered_subset",
    "evaluate_recovery",
    "evaluate_synthetic",
    "plot_tables",
    "recover",
    "recovery_scorers",
    "score_2afc",
    "score_jnd",
]
