"""Terraform: the real CLI (:mod:`.cli`), one bounded, killable command (:mod:`.process`), reading
its output (:mod:`.diagnostics`) and a region's S3 state backend (:mod:`.backend`)."""
