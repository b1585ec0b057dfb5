"""Great Expectations Data Docs that open offline.

GX 1.24's page templates load Bootstrap, jQuery, bootstrap-table, Vega and Font Awesome from
public CDNs, show the GX logo from an S3 bucket (with the project's ``data_context_id`` in the
query string), and build the index page's tables in JavaScript from those libraries: offline,
the index lists nothing. GX looks up a few custom templates in ``plugins/custom_data_docs``,
but after its own, so they cannot replace these.

The views below are GX's own page views with a Jinja loader that puts a handful of templates
in front of GX's: the same pages without the CDN imports, the remote logo and the newsletter
footer, or the logo GX's stylesheet fetches in dark mode; plain HTML tables instead of
JavaScript-built ones; tabs shown one after the other; a
"failed only" filter in plain JavaScript; and a small stylesheet of our own. Everything else
(what each expectation and result says) is rendered by GX unchanged.

:func:`site_config` is the Data Docs site that uses them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from great_expectations.render.view import DefaultJinjaIndexPageView, DefaultJinjaPageView
from jinja2 import ChoiceLoader, DictLoader

_HEAD = """<!DOCTYPE html>
<html>
  <head>
    <meta charset="UTF-8">
    <meta name="viewport" content="width=device-width, initial-scale=1.0" />
    <title>{{ page_title or "Data Docs" }} - Website Activity quality gate</title>
    <style>{% include 'data_docs_default_styles.css' %}</style>
    <style>{% include 'offline_styles.css' %}</style>
    <style>{% include 'data_docs_custom_styles.css' ignore missing %}</style>
    {% include 'favicon.j2' %}
  </head>
  <body>
    {% include 'top_navbar.j2' %}
    <div class="container-fluid">
      <div class="row">
        {% include 'sidebar.j2' %}
        <div class="col-md-10 col-lg-10 col-xs-12">
        {% for section in sections %}
          {% set section_loop = loop -%}
          {% include 'section.j2' %}
        {% endfor %}
        </div>
      </div>
    </div>
  </body>
</html>
"""

TEMPLATES = {
    "page.j2": _HEAD,
    "index_page.j2": _HEAD,
    "js_script_imports.j2": "",
    "cloud-footer.j2": "",
    "cta_footer.j2": "",
    "top_navbar.j2": """
{% if expectation_suite_name %}
  {% set dots = expectation_suite_name.count(".") -%}
{% else %}
  {% set dots = 0 -%}
{% endif %}
{% if "ValidationResults" in renderer_type or "ProfilingResults" in renderer_type %}
  {% set home_url = ((dots + 4) * "../") + "index.html" -%}
{% elif "ExpectationSuite" in renderer_type %}
  {% set home_url = ((dots + 1) * "../") + "index.html" -%}
{% else %}
  {% set home_url = "index.html" -%}
{% endif %}
<nav class="ge-offline-nav">
  <a href="{{ home_url }}"><strong>Data Docs</strong></a> - Website Activity quality gate
  {% if page_title %} / {{ page_title }}{% endif %}
</nav>
""",
    "ge_info.j2": """
<div class="mb-4">
  {% if renderer_type == "ValidationResultsPageRenderer" %}
    <h4>Validation result</h4><p>Which expectations this batch met, and which it did not.</p>
  {% elif renderer_type == "ExpectationSuitePageRenderer" %}
    <h4>Expectation suite</h4><p>Generated from conf/base.yaml by make validate.</p>
  {% else %}
    <p>Built by <code>make validate</code> with Great Expectations {{ ge_version }}.
    The latest run's summary is <code>reports/data_quality.csv</code>.</p>
  {% endif %}
</div>
""",
    "page_action_card.j2": """
<script>
  function geShowValidations(all) {
    const shown = all ? "" : "none";
    document.querySelectorAll(".hide-succeeded-validation-target-child")
      .forEach((el) => { el.parentElement.style.display = shown; });
    document.querySelectorAll(".hide-succeeded-validation-target")
      .forEach((el) => { el.style.display = shown; });
    document.querySelectorAll(".hide-succeeded-validations-column-section-target-child").forEach((el) => {
      const section = el.parentElement.parentElement;
      section.style.display = shown;
      document.querySelectorAll('a[href$="' + section.id + '"]').forEach((a) => { a.style.display = shown; });
    });
  }
</script>
<div class="card">
  <div class="card-header"><strong>Show</strong></div>
  <div class="card-body">
    <button class="btn" onclick="geShowValidations(true)">All</button>
    <button class="btn" onclick="geShowValidations(false)">Failed only</button>
  </div>
</div>
""",
    "tabs.j2": """
{% include 'content_block_header.j2' %}
{% for tab in content_block["tabs"] %}
  <div class="ge-offline-tab">
    <h4>{{ tab.get('tab_name', '') }}</h4>
    {{ tab.get("tab_content") | render_content_block(content_block_id=content_block_id ~ '-' ~ loop.index) }}
  </div>
{% endfor %}
""",
    # bootstrap-table draws these tables in the browser from a CDN script: draw them here.
    "bootstrap_table.j2": """
{% include 'content_block_header.j2' %}
{% set columns = content_block["table_columns"] %}
{% set rows = content_block["table_data"] | render_bootstrap_table_data %}
{% if rows and "_run_time_sort" in rows[0] %}
  {% set rows = rows | sort(attribute="_run_time_sort", reverse=True) %}
{% endif %}
<table class="ge-offline-table">
  <thead>
    <tr>
      {% for column in columns %}<th>{{ column.get("title", column["field"]) }}</th>{% endfor %}
      {% if rows and "_table_row_link_path" in rows[0] %}<th></th>{% endif %}
    </tr>
  </thead>
  <tbody>
    {% for row in rows %}
    <tr>
      {% for column in columns %}
        <td>
        {%- if column["field"] == "validation_success" and row.get("_validation_success_text") -%}
          <span class="ge-status-{{ row['_validation_success_text'] | lower }}">{{ row["_validation_success_text"] }}</span>
        {%- else -%}
          {{ row.get(column["field"], "") }}
        {%- endif -%}
        </td>
      {% endfor %}
      {% if row.get("_table_row_link_path") %}<td><a href="{{ row['_table_row_link_path'] }}">open</a></td>{% endif %}
    </tr>
    {% endfor %}
  </tbody>
</table>
""",
    "offline_styles.css": """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 0; color: #212529; font-size: 14px; line-height: 1.45; }
a { color: #0b5cad; }
code { background: #f1f3f5; padding: 0 3px; }
pre { white-space: pre-wrap; }
.ge-offline-nav { padding: 12px 24px; border-bottom: 1px solid #dee2e6; background: #f8f9fa; font-size: 16px; }
.container-fluid { padding: 12px 24px; }
.row { display: flex; flex-wrap: wrap; gap: 16px; }
.col-md-2, .col-lg-2 { flex: 0 0 220px; max-width: 220px; }
.col-md-10, .col-lg-10 { flex: 1 1 600px; min-width: 0; }
.col-12 { width: 100%; }
.sticky { position: sticky; top: 8px; }
.card { border: 1px solid #dee2e6; border-radius: 4px; margin-bottom: 12px; }
.card-header { background: #f1f3f5; padding: 6px 8px; }
.card-body { padding: 8px; }
.nav { list-style: none; padding-left: 0; }
.btn { border: 1px solid #adb5bd; background: #f8f9fa; padding: 2px 10px; border-radius: 3px; cursor: pointer; }
table { border-collapse: collapse; margin: 6px 0; max-width: 100%; }
th, td { border: 1px solid #dee2e6; padding: 4px 8px; text-align: left; vertical-align: top; }
thead th { background: #f1f3f5; }
.ge-offline-tab { margin-bottom: 24px; }
.text-danger, .ge-status-failed { color: #c92a2a; }
.text-success, .ge-status-success { color: #2b8a3e; }
.text-warning { color: #e67700; }
.ge-status-failed, .ge-status-success { font-weight: bold; }
.fas, .far { font-style: normal; }
.fa-check-circle::before { content: "\\2714"; }
.fa-times::before { content: "\\2716"; }
.fa-exclamation-triangle::before { content: "\\26A0"; }
.fa-question-circle::before { content: "?"; }
""",
}


_REMOTE_URL = re.compile(r"""url\(\s*['"]?https?://[^)]*\)""")


class _OfflineTemplates:
    """Puts :data:`TEMPLATES` in front of GX's own templates."""

    env: Any

    def __init__(self, custom_styles_directory: str | None = None,
                 custom_views_directory: str | None = None) -> None:
        super().__init__(custom_styles_directory, custom_views_directory)  # type: ignore[call-arg]
        gx_loader = self.env.loader
        # GX's stylesheet draws its logo from S3 in dark mode: the same rules without it.
        styles, _, _ = gx_loader.get_source(self.env, "data_docs_default_styles.css")
        templates = {**TEMPLATES, "data_docs_default_styles.css": _REMOTE_URL.sub("none", styles)}
        self.env.loader = ChoiceLoader([DictLoader(templates), gx_loader])


class OfflinePageView(_OfflineTemplates, DefaultJinjaPageView):
    """GX's page view (suites, validation results) without remote assets."""


class OfflineIndexPageView(_OfflineTemplates, DefaultJinjaIndexPageView):
    """GX's index page view without remote assets; its tables are plain HTML."""


_VIEW = {"module_name": __name__, "class_name": OfflinePageView.__name__}


def site_config(folder: Path, validation_results_limit: int = 50) -> dict[str, Any]:
    """A Data Docs site in ``folder`` whose pages need nothing from the network.

    Args:
        folder: Where ``index.html`` and the pages go.
        validation_results_limit: How many validation runs the index lists (newest first).
    """
    return {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(folder)},
        "site_index_builder": {
            "class_name": "DefaultSiteIndexBuilder",
            "validation_results_limit": validation_results_limit,
            "view": {"module_name": __name__, "class_name": OfflineIndexPageView.__name__},
        },
        "site_section_builders": {
            "expectations": {"view": dict(_VIEW)},
            "validations": {"view": dict(_VIEW)},
            "profiling": "None",  # GX's way to switch a section off
        },
    }
