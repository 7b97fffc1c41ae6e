"""Integrations with training frameworks (imported explicitly; never by ``snnmetrics``)."""
