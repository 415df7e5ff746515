"""Engines that fill a whole folder (or a manifest) of pictures with the same guarantees:
outputs written atomically, never over an existing file without ``overwrite``, resumable by
running again, a failures file in the output folder instead of a stop on one bad picture."""
