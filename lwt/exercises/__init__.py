"""Checks of the notebooks' implement-it exercises, one module per lesson.

Each ``check_*`` runs the learner's function on cases worked by hand, on the cases the
lesson is about (ties, boundaries half a step outside a range, empty clusters, zero
counts, accumulators near ±2³¹ …) and on seeded random ones, with lwt's own answer
hidden while the learner's code runs (:class:`~lwt.exercises._check.Guard`). It prints
``pass: …`` or ``not yet: …`` with the first failing case, expected and actual values
and a likely cause, and returns whether it passed. ``tests/test_exercises.py`` feeds
every check its notebook's solution and a list of known-wrong ones.

    from lwt.exercises.lesson02 import check_ste
    check_ste(MyFakeQuant)
"""
