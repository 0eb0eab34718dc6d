"""Managers (layer 3): shared objects in a server process, reached through proxies.

``_wire`` (sockets, frames, handshake) < ``_proxy`` (client side, references) < ``_server``
< ``_proxies`` (proxy types) < ``_base`` (BaseManager) < ``_sync_manager``,
``_shm_manager``.  The public names live in :mod:`procly.managers`.
"""
