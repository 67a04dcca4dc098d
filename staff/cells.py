"""How a list cell shows long text (an error, a partner's answer): one line cut with an ellipsis at the
cell's width (`.relay-clip`, templates/admin/base_site.html), the whole of it on hover. A row with an
error stays one row high, and the columns after it stay on screen."""

from django.utils.html import format_html


def clip(text: str, em: int = 24):
    if not text:
        return ""
    return format_html('<span class="relay-clip" style="max-width: {}em" title="{}">{}</span>', em, text, text)
