"""A remote engine over any OpenAI-compatible server: vLLM, SGLang, llama.cpp's servers.

Every sample is its own HTTP request (a request with ``n`` samples becomes ``n`` calls):
each sample then has its own seed, its own token count and its own usage, and the
samples of one request spread over all servers. The servers' prefix caches make the
repeated prompt cheap. All HTTP runs on one private event-loop thread, so any thread or
event loop may call the engine. See docs/ENGINES.md for what a server must offer.

One job per module: ``profiles`` (what each kind of server offers), ``template`` (chat
templates rendered on the client), ``detect`` (server capability detection), ``calls``
(request building), ``transport`` (HTTP failover, load balancing and retries),
``replies`` (response parsing), ``engine`` (the engine protocol on its event-loop thread).
"""

from ponder.engines.chat_template import ChatTemplate
from ponder.engines.openai.calls import sample_seed
from ponder.engines.openai.engine import OpenAIEngine
from ponder.engines.openai.profiles import PROFILES, ServerProfile

__all__ = ["PROFILES", "ChatTemplate", "OpenAIEngine", "ServerProfile", "sample_seed"]
