/* lib/chan/reserve.h: reserved sends, for a pool's completion channels (not API).
 *
 * A pool must deliver a completion without ever waiting and without ever dropping it. So it reserves the
 * room at submit: a reservation succeeds only while reservations + buffered elements < capacity, and the
 * send that uses it later finds room (see chan.c, "Reservations"). Each reservation also holds a reference
 * to the channel, so a channel destroyed by its owner while completions are in flight lives until the last
 * one was sent. */
#ifndef WEFT_CHAN_RESERVE_H
#define WEFT_CHAN_RESERVE_H

#include "weft/chan.h"

/* Reserves room for one element (ch buffered, its sizes checked by the caller). Returns 0, WEFT_ECLOSED,
 * or WEFT_EFULL (reservations + buffered elements already fill the capacity). Never blocks. */
int weft__chan_reserve(weft_chan *ch);
/* Gives a reservation back unused. */
void weft__chan_unreserve(weft_chan *ch);
/* Sends *elem with a reservation, which it consumes (with its reference: ch may be freed on return).
 * Returns 0, or WEFT_ECLOSED / WEFT_EFULL when the element could not be sent (the channel was closed, or
 * sends that held no reservation took the room); never blocks beyond waiting for a receiver that is
 * already copying the oldest element out (a few instructions). */
int weft__chan_send_reserved(weft_chan *ch, const void *elem);

#endif
