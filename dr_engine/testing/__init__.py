"""Shipped for tests, ours and users': fake actions and clocks, step contexts, sample runs,
moto fixtures, a Prefect home warm-up and the action contract suite (:mod:`.contracts`)."""
