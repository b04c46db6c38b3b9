"""`slack.post-message`: post to a channel with slack-sdk's AsyncWebClient (SPEC §10).

The token is the secret `slack-token`; the API's base URL is `DWF_SLACK_API_URL` (tests point
it at a local server that speaks Slack's Web API). slack-sdk's own retries are off: the node's
retry policy decides. Rate limits (HTTP 429, `ratelimited`), Slack's 5xx and its own transient
errors, connection errors and timeouts are transient; any other Slack error (`invalid_auth`,
`channel_not_found`, `not_in_channel`, …) is permanent, with Slack's error code in the message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.actions.base import Action, ActionContext, ActionResult, ResourceLink
from runner.actions.http import retry_after_seconds

TOKEN_SECRET = "slack-token"
#: Slack error codes that say "try again later" rather than "this request is wrong".
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "rate_limited", "service_unavailable", "internal_error", "request_timeout",
     "fatal_error"}
)  # fmt: skip


class PostMessage(Action):
    """Post a message (text and/or Block Kit blocks), optionally in a thread."""

    type = "slack.post-message"
    description = (
        "Post a message to a Slack channel (chat.postMessage) with the token in the secret "
        "`slack-token`; returns {ts, channel} and a resource link to the message."
    )
    parameters_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["channel"],
        "properties": {
            "channel": {
                "type": "string",
                "minLength": 1,
                "description": "Channel id (C0123…) or name (#ops).",
            },
            "text": {
                "type": "string",
                "description": "The message text (the notification text when blocks are given).",
            },
            "blocks": {
                "type": "array",
                "items": {"type": "object"},
                "description": "Block Kit blocks.",
            },
            "threadTs": {
                "type": "string",
                "description": "Reply in the thread of the message with this ts.",
            },
        },
    }
    outputs_schema = {
        "type": "object",
        "properties": {
            "ts": {"type": "string", "description": "The message's timestamp (its id)."},
            "channel": {"type": "string", "description": "The channel id it was posted to."},
        },
    }

    async def execute(self, context: ActionContext, params: Mapping[str, Any]) -> ActionResult:
        """chat.postMessage, then chat.getPermalink for the resource link's URL."""
        import aiohttp
        from slack_sdk.errors import SlackApiError
        from slack_sdk.web.async_client import AsyncWebClient

        if not params.get("text") and not params.get("blocks"):
            return ActionResult.failed(
                "InvalidParameters", "parameters: give `text`, `blocks`, or both"
            )
        services = context.services
        client = AsyncWebClient(
            token=services.credentials.get(TOKEN_SECRET),
            base_url=services.settings.slack_api_url,
            timeout=max(int(services.settings.http_timeout), 1),
            headers=context.outbound_headers(),
            retry_handlers=[],
        )
        arguments: dict[str, Any] = {"channel": params["channel"]}
        if params.get("text"):
            arguments["text"] = params["text"]
        if params.get("blocks"):
            arguments["blocks"] = list(params["blocks"])
        if params.get("threadTs"):
            arguments["thread_ts"] = params["threadTs"]
        try:
            response = await client.chat_postMessage(**arguments)
        except SlackApiError as exc:
            return slack_failure("chat.postMessage", exc)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return ActionResult.failed(
                "ConnectionError",
                f"chat.postMessage: {exc or type(exc).__name__}",
                transient=True,
            )
        data = response.data if isinstance(response.data, dict) else {}
        ts, channel = data.get("ts"), data.get("channel")
        if not isinstance(ts, str) or not isinstance(channel, str):
            return ActionResult.failed(
                "UnexpectedResponse",
                "chat.postMessage answered ok but without the expected string fields `ts` and "
                f"`channel` (got keys: {', '.join(sorted(data)) or 'none'})",
            )
        url = None
        try:  # the message is posted: a missing permalink does not fail the node
            permalink = await client.chat_getPermalink(channel=channel, message_ts=ts)
            url = permalink.get("permalink") if isinstance(permalink.data, dict) else None
        except (SlackApiError, aiohttp.ClientError, TimeoutError):
            pass
        link = ResourceLink("slack", "message", f"{channel}/{ts}", url)
        return ActionResult.ok({"ts": ts, "channel": channel}, link)


def slack_failure(method: str, exc: Any) -> ActionResult:
    """A SlackApiError as a result: transient for rate limits and Slack's own trouble."""
    response = exc.response
    status = getattr(response, "status_code", 0) or 0
    data = response.data if isinstance(getattr(response, "data", None), dict) else {}
    code = str(data.get("error") or f"HTTP {status}")
    transient = status == 429 or status >= 500 or code in TRANSIENT_ERRORS
    headers = {k.lower(): v for k, v in dict(getattr(response, "headers", {}) or {}).items()}
    retry_after = retry_after_seconds(headers.get("retry-after")) if transient else None
    message = f"{method} failed: {code}"
    if status and status != 200:
        message += f" (HTTP {status})"
    return ActionResult.failed(
        f"Slack {code}", message, transient=transient, retry_after=retry_after
    )
