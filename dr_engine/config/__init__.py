"""Configuration: YAML to validated models, every error located (file, line, field).

- :mod:`.loader` loads a runbook and its regions and validates each step's ``with:`` against
  its action's ``Params`` (which is why this layer sits above the actions);
- :mod:`.bindings` resolves ``${...}`` references and secrets at run time;
- :mod:`.runbooks` finds runbook files; :mod:`.problems` turns pydantic errors into located
  problems; :mod:`.yamlsafe` parses YAML with line numbers and limits; :mod:`.gcpause` keeps
  large loads fast.
"""
