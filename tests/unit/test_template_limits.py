"""Templates are held to limits of size, time and memory while they compile and render
(issue 16 item 4): each limit configurable, each error naming its setting."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from postroom.notify.render import Part, TemplateError, render_part
from tests.timebound import run_bounded

if TYPE_CHECKING:
    from postroom.notify.render import TemplateLimits

HUGE = {
    "center filter": "{{ 'x'|center(1000000000) }}",
    "center method": "{{ 'x'.center(1000000000) }}",
    "ljust": "{{ 'x'.ljust(1000000000) }}",
    "rjust": "{{ 'x'.rjust(1000000000) }}",
    "zfill": "{{ '1'.zfill(1000000000) }}",
    "format filter width": "{{ '%1000000000s'|format('x') }}",
    "percent precision": "{{ '%.1000000000f' % 1.0 }}",
    "format method width": "{{ '{:>1000000000}'.format('x') }}",
    "format width argument": "{{ '{:>{w}}'.format('x', w=1000000000) }}",
    "format_map": "{{ '{x:>1000000000}'.format_map({'x': 1}) }}",
    "indent": "{{ 'a\nb'|indent(1000000000) }}",
    "repetition": "{{ 'a' * 10**9 }}",
    "range products": "{{ (range(100000)|list) * 100000 }}",
    "expandtabs": "{{ ('\t' * 1000).expandtabs(1000000) }}",
    "replace": "{{ ('a' * 10000).replace('a', 'b' * 10000) }}",
    "doubling with ~": "{% set ns = namespace(x='a') %}{% for i in range(40) %}"
    "{% set ns.x = ns.x ~ ns.x %}{% endfor %}{{ ns.x|length }}",
    "doubling with +": "{% set ns = namespace(x='a') %}{% for i in range(40) %}"
    "{% set ns.x = ns.x + ns.x %}{% endfor %}{{ ns.x|length }}",
    "a macro's output": "{% macro m() %}{% for i in range(100000) %}"
    + "x" * 1000
    + "{% endfor %}{% endmacro %}{{ m()|length }}",
    "a block's output": "{% set b %}{% for i in range(100000) %}"
    + "y" * 1000
    + "{% endfor %}{% endset %}{{ b|length }}",
    "batch": "{{ range(3)|batch(1000000000, 'x')|list|length }}",
    "slice": "{{ range(3)|slice(1000000000)|list|length }}",
    "squaring": "{% set ns = namespace(x=10**60) %}{% for i in range(40) %}"
    "{% set ns.x = ns.x * ns.x %}{% endfor %}{{ 1 }}",
    "a tower of powers": "{{ ((10**64)**64)**64 }}",
    "lipsum": "{{ lipsum(n=1000000000) }}",
}


@pytest.mark.parametrize("source", list(HUGE.values()), ids=list(HUGE))
def test_huge_values_are_refused_before_they_are_built(source: str) -> None:
    """center(1000000000) allocated 1 GB before the output check saw it."""
    outcome, cpu, grown = run_bounded(render_part, "t", Part.HTML, source, {}, wall=60)
    assert outcome.startswith("TemplateError"), outcome
    assert grown < 64, f"peak memory grew by {grown:.0f} MB"
    assert cpu < 2, f"{cpu:.1f} s"


def test_a_loop_that_prints_nothing_stops_at_the_deadline() -> None:
    """The deadline was checked between output chunks: a silent loop ran on (12 s past
    the 5 s limit, and a nested one for hours)."""
    loop = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    outcome, cpu, _ = run_bounded(render_part, "t", Part.TEXT, loop, {}, wall=60)
    assert "rendering took longer than 5 s" in outcome, outcome
    assert "POSTROOM_TEMPLATE_RENDER_TIMEOUT_S" in outcome
    assert cpu < 6.5, f"{cpu:.1f} s"


def broken(
    source: str, limits: TemplateLimits, data: dict[str, object] | None = None
) -> TemplateError:
    with pytest.raises(TemplateError) as refused:
        render_part("t", Part.HTML, source, data or {}, limits)
    return refused.value


def test_every_limit_is_configurable_and_named() -> None:
    from postroom.notify.render import TemplateLimits

    small = TemplateLimits(max_source_chars=100, max_tags=3, max_output_chars=1000)
    e = broken("x" * 101, small)
    assert e.limit == "POSTROOM_TEMPLATE_MAX_SOURCE_CHARS" and "101 characters" in e.reason
    e = broken("{{ a }}{{ a }}{% if a %}{% endif %}", small, {"a": 1})
    assert e.limit == "POSTROOM_TEMPLATE_MAX_TAGS" and "4 tags" in e.reason
    e = broken("{% for i in range(100) %}" + "y" * 20 + "{% endfor %}", small)
    assert e.limit == "POSTROOM_TEMPLATE_MAX_OUTPUT_CHARS"
    e = broken("{{ 'x' * 1001 }}", small)
    assert e.limit == "POSTROOM_TEMPLATE_MAX_OUTPUT_CHARS" and e.line == 1
    quick = TemplateLimits(render_timeout_s=0.2)
    e = broken(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", quick
    )
    assert e.limit == "POSTROOM_TEMPLATE_RENDER_TIMEOUT_S" and "0.2 s" in e.reason
    # within the limits, the same templates render
    assert render_part("t", Part.HTML, "{{ 'x' * 1000 }}", {}, small) == "x" * 1000


def test_compilation_has_a_deadline() -> None:
    from postroom.notify.render import TemplateLimits

    source = "{{ a }}" * 1900 + "{{ [" + "1, " * 6000 + "] }}"
    e = broken(source, TemplateLimits(compile_timeout_s=0.01), {"a": 1})
    assert e.limit == "POSTROOM_TEMPLATE_COMPILE_TIMEOUT_S", e.reason


def test_memory_is_bounded_while_rendering() -> None:
    """A macro keeps its output until it returns: 10,000,000 small pieces are ≈ 80 MB of
    references, which the output checks never see."""
    source = (
        "{% macro m() %}{% for i in range(100000) %}{% for j in range(100) %}{{ 'ab' }}"
        "{% endfor %}{% endfor %}{% endmacro %}{{ m()|length }}"
    )
    from postroom.notify.render import TemplateLimits

    limits = TemplateLimits(max_memory_mb=32, render_timeout_s=60, max_output_chars=10**8)
    outcome, _, grown = run_bounded(render_part, "t", Part.HTML, source, {}, limits, wall=120)
    assert "POSTROOM_TEMPLATE_MAX_MEMORY_MB" in outcome, outcome
    assert grown < 32 + 64


def test_ordinary_templates_are_unchanged() -> None:
    source = (
        "{% for run in runs %}{{ loop.index }}. {{ run.name|center(12) }} {{ '%5.1f'|format(run.s) }}"
        " {{ '{:>6}'.format(run.result) }}{% if not loop.last %}~{% endif %}{% endfor %}"
    )
    runs = [{"name": "unit", "s": 1.25, "result": "ok"}, {"name": "e2e", "s": 30, "result": "fail"}]
    assert render_part("t", Part.TEXT, source, {"runs": runs}) == (
        "1.     unit       1.2     ok~2.     e2e       30.0   fail"
    )
