"""What every part of DynamoBatchStore shares: its retry sleep, its clock, and the conditional update."""

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from pynamodb.attributes import UnicodeAttribute
from pynamodb.exceptions import UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from costgate.clock import Clock, SystemClock
from costgate.dal.table import CostgateItem


class BatchTable:
    """The batch records in the single table. The clock only dates the CHECK flags a finished unit sets."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep, clock: Clock | None = None) -> None:
        self._sleep = sleep
        self._clock = clock or SystemClock()
        self._flags: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._flags_lock = threading.Lock()


def update_if(item: CostgateItem, actions: list[Action], condition: Condition) -> bool:
    """One conditional UpdateItem; False, changing nothing, when the condition is refused."""
    try:
        item.update(actions=actions, condition=condition)
    except UpdateError as error:
        if error.cause_response_code != "ConditionalCheckFailedException":
            raise
        return False
    return True


def set_or_remove(attribute: UnicodeAttribute, value: str | None) -> Action:
    return attribute.remove() if value is None else attribute.set(value)
