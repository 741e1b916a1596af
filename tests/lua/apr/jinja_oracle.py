#!/usr/bin/python3
"""jinja_oracle.py — renders template cases with Debian's python3-jinja2,
configured as Hugging Face's transformers configures it, so the Lua specs
can compare apr's Jinja interpreter against the reference.

usage: jinja_oracle.py CASES.json RESULTS.json

CASES.json is a list of {"template": str, "vars": {...}, "now": epoch
seconds or null, "keep_trailing_newline": bool}. RESULTS.json gets, per case,
{"ok": true, "text": str} or {"ok": false, "error": ExceptionClass,
"message": str}.

The environment mirrors transformers' _compile_jinja_template:
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) with the
loopcontrols extension and a {% generation %} block that renders its body,
tojson = json.dumps(x, ensure_ascii=False, indent=..., separators=...,
sort_keys=...), and the globals raise_exception and strftime_now (here at a
fixed time, so outputs are reproducible).
"""
import json
import sys
import warnings
from datetime import datetime

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment


class GenerationBlock(Extension):
    """{% generation %}...{% endgeneration %} renders its body unchanged."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_env(now, keep_trailing_newline):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                          separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        when = datetime.fromtimestamp(now) if now is not None else datetime.now()
        return when.strftime(fmt)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=keep_trailing_newline,
        extensions=[GenerationBlock, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


_templates = {}


def compiled(case):
    """Each (template, clock, trailing-newline setting) is compiled once."""
    key = (case["template"], case.get("now"), case.get("keep_trailing_newline", False))
    if key not in _templates:
        env = make_env(key[1], key[2])
        _templates[key] = env.from_string(key[0])
    return _templates[key]


def render(case):
    try:
        template = compiled(case)
        return {"ok": True, "text": template.render(**case.get("vars", {}))}
    except RecursionError:
        return {"ok": False, "error": "RecursionError", "message": "maximum recursion depth exceeded"}
    except Exception as e:  # every failure is an answer to compare
        return {"ok": False, "error": type(e).__name__, "message": str(e)}


def main():
    # jinja2 compiles `1.0[1:]` to Python, which warns; the failure itself
    # is the answer.
    warnings.filterwarnings("ignore", category=SyntaxWarning)
    with open(sys.argv[1], encoding="utf-8") as f:
        cases = json.load(f)
    results = [render(case) for case in cases]
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
