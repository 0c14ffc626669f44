# Cython declarations for the compiled build of engine.py (docs/architecture.md, "Two
# builds"). engine.py stays plain Python; this file only types it. Notionals and fees
# stay Python ints: price * quantity * rate passes 64 bits (matcher/protocol.py).

cimport cython

from matcher.book cimport (
    Book, Level, Order, kind_post_only, kind_stp, kind_tif, pack_kind, stop_rises,
)


cdef class Engine:
    cdef public object maker_rate
    cdef public object taker_rate
    cdef public Book book
    cdef public long long seq
    cdef public long long ts
    cdef public long long book_seq
    cdef public long long trade_id
    cdef public object last_price
    cdef public dict stops
    cdef public object rising_stops
    cdef public object falling_stops
    cdef public dict finished
    cdef public object finished_ids
    cdef public Py_ssize_t finished_window
    cdef public dict client_ids
    cdef public object recent_trades
    cdef public object _low
    cdef public object _high
    cdef public object rules
    cdef public object grid_units
    cdef public object candles
    cdef public dict _handlers

    cdef list _count_book_change(self, list events)
    cdef _check_client_id(self, object account, object client_order_id)
    cdef Order _owned(self, object order_id, object account)
    cdef bint _crosses(self, int side, object price)
    @cython.locals(kind=int, tif=int, leaves=cython.longlong, filled=cython.longlong,
                   self_trade=bint, level=Level)
    cdef _enter(self, Order order, list events, long long ts)
    @cython.locals(side=int, is_buy=bint, book_side=object, prices=list, levels=dict,
                   best_index=Py_ssize_t, opposite=int, leaves=cython.longlong,
                   stp=int, trade_id=cython.longlong, index=dict, taker_trades=list,
                   self_trade=bint, level=Level, changed=bint, traded=bint, maker=Order,
                   maker_leaves=cython.longlong, fill=cython.longlong, trade=tuple)
    cdef bint _match(self, Order taker, list events, long long ts)
    cdef object _fillable(self, Order taker)
    @cython.locals(finished_ids=object, old=Order)
    cdef _finish(self, Order order)
    cdef list _triggered(self)
    cdef _run_stops(self, list events, long long ts)
