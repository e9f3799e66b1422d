"""Math tasks: every task yields :class:`sipf.tasks.base.MathRecord` lists per split."""
