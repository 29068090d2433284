/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The one definition of what the BPF side and userspace share: map sizes, keys, values and
 * counters. Compiled by clang -target bpf (bpf/splice.bpf.c) and by g++ (userspace), so it
 * uses only fixed-width kernel types, explicit padding and size assertions.
 */
#pragma once

#include <linux/bpf.h> /* struct bpf_spin_lock */
#include <linux/types.h>

#ifdef __cplusplus
#define SPLICER_STATIC_ASSERT static_assert
#else
#define SPLICER_STATIC_ASSERT _Static_assert
#endif

/*
 * Sockets the sockhash (and the peers and copied maps, one entry per socket) can hold: two
 * per spliced connection. The object is built with the default; the daemon sets each map's
 * max_entries to 2 * max_connections before load (SpliceProgram::load, LoadOptions
 * max_sockets), so every connection it may hold fits. A pinned map's max_entries (bpf map
 * info) says what the running daemon chose: an even number in MIN..LIMIT.
 */
#define SPLICER_DEFAULT_SOCKETS 131072
#define SPLICER_MIN_SOCKETS 2
#define SPLICER_SOCKETS_LIMIT 2000000 /* max_connections tops at 1,000,000 */

/*
 * Flow control (DESIGN.md, kernel fact 2): how many redirected bytes may wait for the peer's
 * send path before the verdict stops redirecting and passes bytes up instead. The default is
 * what the kernel fact was measured with; the loader may set another value before load.
 */
#define SPLICER_DEFAULT_FLOW_LIMIT_BYTES (1ULL << 20)
/*
 * The verdict compares 32-bit sequence-number differences (write_seq wraps every 4 GiB), which
 * are exact only while the real difference stays well below 2^31: the limit is capped at 1 GiB.
 */
#define SPLICER_MAX_FLOW_LIMIT_BYTES (1ULL << 30)

/* Which way bytes flow, seen from the client. */
enum splicer_direction {
	SPLICER_DIR_CLIENT_TO_BACKEND = 0,
	SPLICER_DIR_BACKEND_TO_CLIENT = 1,
	SPLICER_DIR_COUNT = 2,
};

/*
 * Sockhash key: the socket cookie (bpf_get_socket_cookie, SO_COOKIE), stable for the life of
 * a socket and never reused, unlike an fd number.
 */
typedef __u64 splicer_cookie;

/* splicer_link.flags */
#define SPLICER_LINK_BASELINE_SET 1U /* peer_write_seq_base holds the peer's baseline */
#define SPLICER_LINK_NEXT_SEQ_SET 2U /* next_seq holds where the next payload byte starts */
#define SPLICER_LINK_URGENT_SEEN 4U  /* urgent_seq holds the last urgent byte handled */
/*
 * The verdict could not trim an overlap: it passed the skb whole and passes everything after
 * it; userspace must end the pair with RSTs and copy none of it.
 */
#define SPLICER_LINK_ABORT 8U

/*
 * Peer map value, keyed by a socket's cookie: where its bytes go and how many went which way.
 * Written by userspace once (pair), then only by the verdict of the key socket, which the
 * kernel runs for one socket at a time (socket lock held).
 *
 * Every byte that arrives on the key socket after insertion is either redirected (straight to
 * the peer's send path, zero copy) or passed (left on the key socket, for userspace to read
 * and copy to the peer). The companion `copied` map (struct splicer_copied), written only by
 * userspace, counts the passed bytes userspace has written into the peer.
 */
struct splicer_link {
	splicer_cookie peer_cookie; /* sockhash key of the socket to redirect to */
	__u64 redirected;           /* bytes redirected to the peer */
	__u64 passed;               /* bytes passed to the key socket's own receive queue */
	__u32 direction;            /* enum splicer_direction of bytes arriving on the key */
	__u32 flags;                /* SPLICER_LINK_* */
	/*
	 * The peer's tcp_sock write_seq, minus the bytes copied so far, when the verdict first
	 * looked at the peer: write_seq - base - copied is what the peer's send path has taken
	 * of the redirected bytes (modulo 2^32).
	 */
	__u32 peer_write_seq_base;
	/*
	 * TCP sequence number of the first payload byte the verdict has not seen yet on the key
	 * socket. A retransmitted segment that overlaps bytes already received is queued whole
	 * by TCP and tcp_read_skb() hands it over whole: the verdict trims what it already saw.
	 */
	__u32 next_seq;
	/*
	 * TCP sequence number of the last urgent byte (MSG_OOB) the verdict handled. The kernel
	 * never clears a sockmap socket's urgent mark (only tcp_recvmsg() does), so this keeps
	 * one mark from being handled twice.
	 */
	__u32 urgent_seq;
	/* Urgent bytes the verdict dropped (an skb holding nothing else): never delivered. */
	__u32 urgent_dropped;
	/*
	 * Where the urgent byte of the last skb passed with one sits in the passed stream,
	 * counted from 1 (0: none): userspace leaves that byte out of its copy. One at a time,
	 * as TCP keeps one mark: a newer mark turns an older byte not yet copied into data.
	 */
	__u64 urgent_at;
};
SPLICER_STATIC_ASSERT(sizeof(struct splicer_link) == 56, "splicer_link layout");

/*
 * `copied` map value, keyed by a socket's cookie: passed bytes userspace has copied from the
 * key socket into its peer. Userspace updates it in place with BPF_F_LOCK and the verdict reads
 * it under the lock. The lock is what makes it in place: a plain update of a hash map swaps in
 * a new element and recycles the old one at once (per-CPU spare elements), so a verdict still
 * holding the old pointer could read another socket's count.
 */
struct splicer_copied {
	struct bpf_spin_lock lock;
	__u32 removed; /* of `bytes`, urgent bytes userspace left out instead of writing */
	__u64 bytes;
};
SPLICER_STATIC_ASSERT(sizeof(struct splicer_copied) == 16, "splicer_copied layout");

/* One direction's share of the counters. */
struct splicer_flow_counters {
	__u64 redirected_skbs;
	__u64 redirected_bytes;
	__u64 passed_skbs; /* passes with payload: flow control, passing mode, no peer, failed redirect */
	__u64 passed_bytes;
	__u64 limit_trips;     /* over flow_limit_bytes pending at the peer: passing mode entered */
	__u64 peer_missing;    /* the peer was not in the sockhash (closed) or not a TCP socket */
	__u64 redirect_failed; /* bpf_sk_redirect_hash refused the peer */
	__u64 bare_fins;       /* payload-free FIN skbs, always dropped (see the verdict) */
	__u64 overlap_skbs;    /* skbs starting before bytes already seen: head trimmed */
	__u64 overlap_bytes;   /* bytes trimmed off them (would have been duplicated) */
	__u64 overlap_failed;  /* overlaps that could not be trimmed (see edit_failed) */
	__u64 room_trips;      /* the peer's send buffer had no room: passing mode entered */
	__u64 urgent_bytes;    /* urgent bytes (MSG_OOB) alone in their skb: dropped */
	__u64 urgent_passed;   /* skbs passed for userspace to leave their urgent byte out */
	__u64 edit_failed;     /* an overlap trim failed: passed, pair aborted */
};
SPLICER_STATIC_ASSERT(sizeof(struct splicer_flow_counters) == 120, "splicer_flow_counters layout");

/* Per-CPU counters, one array slot; userspace sums the CPUs. */
struct splicer_counters {
	struct splicer_flow_counters flow[SPLICER_DIR_COUNT]; /* by enum splicer_direction */
	__u64 no_peer; /* verdict ran on a socket with no peer entry: passed up */
	__u64 pad;
};
SPLICER_STATIC_ASSERT(sizeof(struct splicer_counters) == 256, "splicer_counters layout");
