"""The description must render as its content type says, with readme_renderer as on PyPI. Pure."""

from __future__ import annotations

from email.message import EmailMessage

import readme_renderer.markdown
import readme_renderer.rst

from gateway.errors import GatewayError

DESCRIPTION_HELP_URL = "https://pypi.org/help/#description-content-type"


def check_description(
    description: str | None, description_content_type: str | None, *, help_url: str = DESCRIPTION_HELP_URL
) -> None:
    """The description must render as its content type says (reStructuredText when it says nothing)."""
    if not description:
        return
    content_type = description_content_type or "text/x-rst"
    if _renders(description, content_type):
        return
    if description_content_type:
        failure = f"The description failed to render for '{content_type}'."
    else:
        failure = "The description failed to render in the default format of reStructuredText."
    raise GatewayError(400, f"{failure} See {help_url} for more information.", "invalid_description")


def _renders(text: str, content_type: str) -> bool:
    """Whether readme_renderer renders `text` for `content_type`; plain text always does."""
    message = EmailMessage()
    message["content-type"] = content_type
    kind = message.get_content_type()
    if kind == "text/x-rst":
        return readme_renderer.rst.render(text) is not None
    if kind == "text/markdown":
        return readme_renderer.markdown.render(text) is not None
    return True
