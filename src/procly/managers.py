"""Drop-in for :mod:`multiprocessing.managers`: shared objects behind a server process.

A manager trusts every authenticated client (requests are pickles, and unpickling runs
code): bind its address to loopback or use the default Unix socket, unless the authkey is
secret and the network trusted.
"""

from __future__ import annotations

from ._managers._base import BaseManager as BaseManager
from ._managers._base import State as State
from ._managers._proxies import AcquirerProxy as AcquirerProxy
from ._managers._proxies import ArrayProxy as ArrayProxy
from ._managers._proxies import BarrierProxy as BarrierProxy
from ._managers._proxies import BaseListProxy as BaseListProxy
from ._managers._proxies import BasePoolProxy as BasePoolProxy
from ._managers._proxies import ConditionProxy as ConditionProxy
from ._managers._proxies import DictProxy as DictProxy
from ._managers._proxies import EventProxy as EventProxy
from ._managers._proxies import IteratorProxy as IteratorProxy
from ._managers._proxies import ListProxy as ListProxy
from ._managers._proxies import NamespaceProxy as NamespaceProxy
from ._managers._proxies import PoolProxy as PoolProxy
from ._managers._proxies import ValueProxy as ValueProxy
from ._managers._proxy import AutoProxy as AutoProxy
from ._managers._proxy import BaseProxy as BaseProxy
from ._managers._proxy import MakeProxyType as MakeProxyType
from ._managers._proxy import RebuildProxy as RebuildProxy
from ._managers._proxy import RemoteError as RemoteError
from ._managers._proxy import Token as Token
from ._managers._proxy import all_methods as all_methods
from ._managers._proxy import public_methods as public_methods
from ._managers._server import Server as Server
from ._managers._shm_manager import SharedMemoryManager as SharedMemoryManager
from ._managers._shm_manager import SharedMemoryServer as SharedMemoryServer
from ._managers._sync_manager import Array as Array
from ._managers._sync_manager import Namespace as Namespace
from ._managers._sync_manager import SyncManager as SyncManager
from ._managers._sync_manager import Value as Value

__all__ = (
    "AcquirerProxy",
    "Array",
    "ArrayProxy",
    "AutoProxy",
    "BarrierProxy",
    "BaseListProxy",
    "BaseManager",
    "BasePoolProxy",
    "BaseProxy",
    "ConditionProxy",
    "DictProxy",
    "EventProxy",
    "IteratorProxy",
    "ListProxy",
    "MakeProxyType",
    "Namespace",
    "NamespaceProxy",
    "PoolProxy",
    "RebuildProxy",
    "RemoteError",
    "Server",
    "SharedMemoryManager",
    "SharedMemoryServer",
    "State",
    "SyncManager",
    "Token",
    "Value",
    "ValueProxy",
    "all_methods",
    "public_methods",
)
