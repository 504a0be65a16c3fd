from genrevision._utils.rendering import render


def test_html_templates_escape_and_markdown_tables_escape_pipes():
    page = render("library_report.html", summary_lines=["<script>x</script>"], precision=0.9, novelty_threshold=0.1,
                  library=None, genre_rows=[], labels=["a&b"], confusion=[("a&b", [1])], most=1, dropped=[],
                  audit=None, audit_rows=None, top=5)
    assert "<script>" not in page and "&lt;script&gt;" in page and "<th>a&amp;b</th>" in page
    assert render("table.md", header=["x", "y"], rows=[["a|b", 1]]) == "| x | y |\n|---|---|\n| a\\|b | 1 |\n"
