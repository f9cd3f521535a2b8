"""Registry of replay venues: exchange id → venue module (a ``Venue``, see ``base``).

``VENUES`` is the one exchange list of the replay server; its order breaks ties (which
venue a capture that names several is taken for, which venue an unprefixed websocket path
shared by several goes to). Everything exchange-specific lives in its venue: the subscribe
protocol (``Handler``), which recorded frames belong to which subscription
(``frame_keys``), the symbols a listing knows (``known_names``), websocket path hints,
error bodies, the reconnect request, options such as auth, and how a capture names it.
The contract is ``venues.base``: ``Venue`` (the module's members), ``VenueHandler`` (its
per-connection class) and ``Connection`` (what that class may use of the session).

======== ==================================== ===============================================
venue    websocket paths                      subscribe → served frames
======== ==================================== ===============================================
binance  ``/stream[?streams=a/b]``,           ``SUBSCRIBE`` → ``{"result":null,"id":N}``;
         ``/ws/<stream>`` (raw payloads)      frames of the stream (``@depth`` served from
                                              ``@depth@100ms`` and vice versa, renamed);
                                              pings every 20 s
coinbase ``/``                                ``subscribe`` → ``subscriptions``; per channel
                                              and product: matches, level2(_batch), ticker,
                                              heartbeat, full; level2/full/level3 need auth
                                              when a test key is configured
bitstamp ``/``                                ``bts:subscribe`` →
                                              ``bts:subscription_succeeded``; frames whose
                                              ``channel`` matches; ``bts:heartbeat``
bitfinex ``/ws/2``                            ``info`` on connect; ``conf``, ``ping``;
                                              ``subscribe`` → the recorded ``subscribed``
                                              event, then its ``[chanId, ...]`` frames and
                                              info events
======== ==================================== ===============================================
"""

from __future__ import annotations

from ops.replay.venues import binance, bitfinex, bitstamp, coinbase
from ops.replay.venues.base import Connection, Item, Venue, VenueHandler

VENUES: dict[str, Venue] = {
    binance.NAME: binance,
    coinbase.NAME: coinbase,
    bitstamp.NAME: bitstamp,
    bitfinex.NAME: bitfinex,
}


def venue_named_in(text: str) -> str | None:
    """The first venue whose ``CAPTURE_HINTS`` occur in ``text`` (a host, a file name)."""
    low = text.lower()
    return next((v.NAME for v in VENUES.values() if any(h in low for h in v.CAPTURE_HINTS)), None)


__all__ = ["VENUES", "Connection", "Item", "Venue", "VenueHandler", "venue_named_in"]
