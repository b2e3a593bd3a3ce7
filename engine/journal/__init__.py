"""Where events are stored before anyone is told they exist."""

from engine.journal.base import HookNameTaken, Journal, JournalUnavailable, PendingAppend
from engine.journal.memory import MemoryJournal

__all__ = ["HookNameTaken", "Journal", "JournalUnavailable", "MemoryJournal", "PendingAppend"]
