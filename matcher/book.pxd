# Cython declarations for the compiled build of book.py (docs/architecture.md, "Two
# builds"). book.py stays plain Python; this file only types it. Ticks, lots, ids and
# timestamps fit a long long (max_price/max_quantity < 2**62, matcher/config.py); a
# level's total may not (a sum of orders), nor may prices that can be None.

cimport cython


# The `kind` encoder, decoders and the stop direction (book.py): C functions in the
# compiled build (gcc inlines them in book; engine calls them through a C pointer).
cpdef int pack_kind(int order_type, int tif, int stp, bint post_only)
cpdef int kind_side(int kind)
cpdef int kind_order_type(int kind)
cpdef int kind_tif(int kind)
cpdef int kind_stp(int kind)
cpdef bint kind_post_only(int kind)
cpdef bint stop_rises(int side, int order_type)


# No cycle can pass through an order or a level (they hold ints, strings, tuples of
# ints and orders), so the collector need not track them: a fifth of the compiled
# flow's time was the collector walking them.
@cython.no_gc
cdef class Order:
    cdef public long long order_id
    cdef public object account
    cdef public object price
    cdef public long long quantity
    cdef public long long leaves
    cdef public int status
    cdef public int kind
    cdef public long long timestamp
    cdef public object client_order_id
    cdef public object stop_price
    cdef public list trades
    cdef public object reason

@cython.no_gc
cdef class Level:
    cdef public object price  # one int object per level, shared by its orders (memory)
    cdef public object total
    cdef public object orders
    cdef public int dead

cdef class Side:
    cdef public int side
    cdef public dict levels
    cdef public list prices

    cpdef Level add_level(self, object price)
    cpdef drop_level(self, object price)

cdef class Book:
    cdef public Side bids
    cdef public Side asks
    cdef public dict orders

    cpdef Level add(self, Order order)
    cpdef Level remove(self, Order order)
    cpdef Level cancel(self, Order order)
    cdef Level _unlink(self, Side book_side, Level level, Order order)
