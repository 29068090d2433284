// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The sk_skb stream verdict program: every skb arriving on a socket in the sockhash is
 * redirected to that socket's peer, found through the peer map, unless that would pile bytes
 * up where nothing charges them (flow control, DESIGN.md kernel fact 2): then it is passed to
 * the socket's own receive queue, which closes its TCP window, and userspace copies it.
 *
 * Per skb: no link -> pass. A bare FIN -> drop (TCP has taken it already). A pair flagged for
 * abort -> pass. Bytes seen before (an overlapping retransmit) -> trimmed; a trim that fails
 * -> pass and flag the pair for abort (userspace ends it with RSTs). The socket's urgent byte
 * (MSG_OOB), which is never delivered: alone -> drop; with other bytes -> pass, its place
 * recorded for userspace to leave it out of its copy. Passed bytes not yet all in the peer
 * (by userspace's report, or else by the peer's write_seq) -> pass (order). The peer holding
 * more than flow_limit_bytes of redirected bytes it has not taken, or having no room in its
 * send buffer -> pass (passing mode starts). Otherwise redirect to the peer's egress.
 *
 * Needs only UAPI headers; the few kernel fields it reads (tcp_sock write_seq, copied_seq,
 * urg_data, urg_seq, sk_sndbuf, sk_wmem_queued, the skb's TCP sequence number) are relocated
 * by CO-RE against the running kernel's BTF. Needs Linux 6.3+ (bpf_cast_to_kern_ctx).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "splicer/bpf_abi.h"

/*
 * Only the fields the verdict reads. preserve_access_index makes clang emit CO-RE relocations
 * so libbpf rewrites the offsets to the running kernel's structs at load time.
 */
struct sock {
	int sk_sndbuf;	    /* send buffer size, bytes */
	int sk_wmem_queued; /* bytes (truesize) in the write and retransmit queues */
} __attribute__((preserve_access_index));

struct inet_sock {
	struct sock sk;
} __attribute__((preserve_access_index));

struct inet_connection_sock {
	struct inet_sock icsk_inet;
} __attribute__((preserve_access_index));

struct tcp_sock {
	struct inet_connection_sock inet_conn;
	__u32 write_seq;  /* sequence number after the last byte queued for sending */
	__u32 copied_seq; /* sequence number of the first byte not yet consumed */
	__u16 urg_data;	  /* non-zero while an urgent mark is pending (TCP_URG_*) */
	__u32 urg_seq;	  /* sequence number of the urgent byte */
} __attribute__((preserve_access_index));

/* The kernel's view of the skb: cb[] starts with struct tcp_skb_cb, whose first field is seq. */
struct sk_buff {
	char cb[48];
} __attribute__((preserve_access_index));

/* Kernel 6.3+: the __sk_buff context as the kernel's struct sk_buff, read-only here. */
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

/* Set by the loader before load (SpliceProgram::load); at most SPLICER_MAX_FLOW_LIMIT_BYTES. */
const volatile __u64 flow_limit_bytes = SPLICER_DEFAULT_FLOW_LIMIT_BYTES;
/* 0 only for tests and measurements: redirect everything, as if there were no flow control. */
const volatile __u32 flow_control = 1;
/*
 * 1 only for tests (the daemon sets it in CMake Debug builds from the environment variable
 * SPLICER_TEST_FAIL_VERDICT_TRIM): every skb takes trim_overlap()'s failure branch, as if
 * bpf_skb_adjust_room() had failed, so the abort path can be tested on real sockets.
 */
const volatile __u32 fail_trims = 0;

/* sk_skb_adjust_room() removes at most this many bytes from the head per call. */
#define SPLICER_TRIM_STEP 0xfffU
/* Enough steps for the largest overlap: less than one skb (512 KiB with BIG TCP). */
#define SPLICER_TRIM_STEPS 160

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, SPLICER_DEFAULT_SOCKETS); /* resized at load */
	__type(key, splicer_cookie);
	__type(value, __u64);
} sockets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SPLICER_DEFAULT_SOCKETS); /* resized at load */
	__type(key, splicer_cookie);
	__type(value, struct splicer_link);
} peers SEC(".maps");

/* Written only by userspace (in place, BPF_F_LOCK): passed bytes it copied into the peer. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SPLICER_DEFAULT_SOCKETS); /* resized at load */
	__type(key, splicer_cookie);
	__type(value, struct splicer_copied);
} copied SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct splicer_counters);
} counters SEC(".maps");

/*
 * Redirected bytes the peer's send path has not taken yet. The peer's write_seq grows by every
 * byte written into it: the redirected ones the psock backlog has sent and the ones userspace
 * copied. Differences are taken modulo 2^32 (write_seq wraps) and read as signed: a negative
 * value means userspace wrote more than it has reported in `copied` so far, i.e. nothing waits.
 */
static __always_inline __s32 peer_pending(struct splicer_link *link, __u64 written_bytes,
					  __u32 write_seq)
{
	return (__s32)((__u32)(link->redirected + written_bytes) + link->peer_write_seq_base -
		       write_seq);
}

/* TCP_SKB_CB(skb)->seq: the sequence number of the skb's first payload byte. */
static __always_inline __u32 skb_tcp_seq(struct __sk_buff *skb)
{
	struct sk_buff *kskb = bpf_cast_to_kern_ctx(skb);

	return *(__u32 *)&kskb->cb[0];
}

/* The tcp_sock of the socket the skb arrived on, or NULL. */
static __always_inline struct tcp_sock *socket_tcp(struct __sk_buff *skb)
{
	struct bpf_sock *self = skb->sk;

	if (!self)
		return NULL;
	return bpf_skc_to_tcp_sock(self);
}

/*
 * Where the first byte not yet consumed on this socket starts: its copied_seq, exact before
 * the verdict has run for it once (it lags behind afterwards, while passed bytes are unread).
 */
static __always_inline int socket_copied_seq(struct __sk_buff *skb, __u32 *seq)
{
	struct tcp_sock *tcp = socket_tcp(skb);

	if (!tcp)
		return -1;
	*seq = tcp->copied_seq;
	return 0;
}

/*
 * Trims the bytes at the head of the skb that the verdict has already seen. TCP queues a
 * retransmitted segment that partly overlaps received data whole (readers skip the overlap by
 * sequence number), but tcp_read_skb() hands whole skbs to the verdict: without this, the
 * overlap reaches the peer twice. Seen on 6.18 on loopback when the pass path closes the TCP
 * window and the sender retransmits collapsed segments. Returns the skb's new length, -1 for
 * a skb holding nothing new (TCP never queues one), -2 when the trim failed:
 * bpf_skb_adjust_room() pulls the bytes into the skb's head, which allocates for a non-linear
 * skb and can fail under memory pressure.
 */
static __always_inline int trim_overlap(struct __sk_buff *skb, struct splicer_link *link,
					struct splicer_flow_counters *flow, __u32 len)
{
	__u32 seq = skb_tcp_seq(skb);
	__u32 remaining;
	__s32 overlap;
	int i;

	if (!(link->flags & SPLICER_LINK_NEXT_SEQ_SET)) {
		/* Bytes a recv() took before insertion count as seen too. */
		if (socket_copied_seq(skb, &link->next_seq) != 0)
			link->next_seq = seq;
		link->flags |= SPLICER_LINK_NEXT_SEQ_SET;
	}
	if (fail_trims)
		return -2;
	overlap = (__s32)(link->next_seq - seq);
	if (overlap <= 0) {
		link->next_seq = seq + len;
		return len;
	}
	__sync_fetch_and_add(&flow->overlap_skbs, 1);
	/* TCP drops segments it has entirely; one here means the bookkeeping went wrong. */
	if ((__u32)overlap >= len) {
		__sync_fetch_and_add(&flow->overlap_failed, 1);
		return -1;
	}
	remaining = (__u32)overlap;
	for (i = 0; i < SPLICER_TRIM_STEPS && remaining > 0; i++) {
		__u32 step = remaining > SPLICER_TRIM_STEP ? SPLICER_TRIM_STEP : remaining;

		if (bpf_skb_adjust_room(skb, -(__s32)step, 0, 0) != 0)
			break;
		remaining -= step;
	}
	if (remaining > 0) {
		__sync_fetch_and_add(&flow->overlap_failed, 1);
		return -2;
	}
	__sync_fetch_and_add(&flow->overlap_bytes, (__u32)overlap);
	link->next_seq = seq + len;
	return skb->len;
}

/*
 * Where this skb (`len` bytes, its last one at link->next_seq - 1) holds the socket's urgent
 * byte, if it does and that mark was not handled before: 1 with *offset set, else 0.
 * tcp_urg() records the mark (urg_seq) as the segment carrying the byte arrives, before the
 * segment is queued, so it is known by the time the verdict sees the skb. recv() skips the
 * byte at urg_seq whenever urg_data is set; the verdict does the same.
 */
static __always_inline int urgent_offset(struct __sk_buff *skb, struct splicer_link *link,
					 __u32 len, __u32 *offset)
{
	struct tcp_sock *tcp = socket_tcp(skb);
	__u32 urg_seq;
	__u32 at;

	if (!tcp || !tcp->urg_data)
		return 0;
	urg_seq = tcp->urg_seq;
	if ((link->flags & SPLICER_LINK_URGENT_SEEN) && link->urgent_seq == urg_seq)
		return 0;
	at = urg_seq - (link->next_seq - len);
	if (at >= len)
		return 0;
	*offset = at;
	return 1;
}

SEC("sk_skb/stream_verdict")
int splice_verdict(struct __sk_buff *skb)
{
	__u32 zero = 0;
	__u32 len = skb->len;
	splicer_cookie cookie = bpf_get_socket_cookie(skb);
	struct splicer_counters *count = bpf_map_lookup_elem(&counters, &zero);
	struct splicer_link *link = bpf_map_lookup_elem(&peers, &cookie);
	struct splicer_flow_counters *flow;
	struct bpf_sock *peer;
	struct tcp_sock *peer_tcp;
	struct splicer_copied *copied_entry;
	__u64 copied_bytes;
	__u64 removed_bytes;
	__u64 written_bytes;
	__u32 write_seq;
	__s32 pending;
	__s64 need;
	__u32 urgent_at;
	int passing;
	int peer_room;
	int trimmed;

	/* A percpu array slot always exists; the check only satisfies the verifier. */
	if (!count)
		return SK_PASS;
	/* Not (or no longer) paired: leave the bytes to userspace on this socket. */
	if (!link) {
		__sync_fetch_and_add(&count->no_peer, 1);
		return SK_PASS;
	}
	/* pair() writes only valid directions; the bound is for the verifier. */
	if (link->direction >= SPLICER_DIR_COUNT)
		return SK_PASS;
	flow = &count->flow[link->direction];
	/*
	 * A FIN without payload: dropped. TCP has processed the FIN already (RCV_SHUTDOWN is set,
	 * so recv() reads EOF once the passed bytes are read), and userspace propagates the EOF
	 * itself, by the FIN rule (kernel fact 4). Neither redirect nor pass is safe for a
	 * zero-length skb on 6.18: the psock backlog takes the 0 its handler returns for a hard
	 * error, reports EPIPE and stops the socket's transmit for good. Redirected, that hits the
	 * peer at once; passed, it hits this socket whenever its psock queue holds redirected
	 * bytes (the pass is then queued behind them): a client that half-closes while its reply
	 * is being redirected to it lost the rest of the reply (load test, 5-19 of 400 streams).
	 */
	if (len == 0) {
		__sync_fetch_and_add(&flow->bare_fins, 1);
		return SK_DROP;
	}
	/* A trim failed on an earlier skb: everything after it waits for the abort, in order. */
	if (link->flags & SPLICER_LINK_ABORT)
		goto pass;
	trimmed = trim_overlap(skb, link, flow, len);
	/* A full duplicate, which TCP never queues: dropping it loses nothing not delivered. */
	if (trimmed == -1)
		return SK_DROP;
	/*
	 * The trim failed: dropping the skb would lose its new bytes, which TCP has acknowledged
	 * already, and the stream would go on with a hole. Passed whole instead, with everything
	 * after it; userspace, woken by it, ends the pair with a RST each way, copying none of it.
	 */
	if (trimmed <= 0) {
		link->flags |= SPLICER_LINK_ABORT;
		__sync_fetch_and_add(&flow->edit_failed, 1);
		len = skb->len;
		goto pass;
	}
	len = (__u32)trimmed;
	/*
	 * Urgent data: the byte is not delivered, every other byte is, as for a reader connected
	 * directly with default socket options (and as nginx and HAProxy relay it). Cutting it
	 * out here would shrink the skb, and the kernel advances copied_seq by the length the
	 * verdict leaves (tcp_eat_skb): copied_seq would lag rcv_nxt for good and poll() report
	 * POLLIN forever. So an skb holding more than the byte is passed whole, and userspace,
	 * whose reads advance copied_seq by what they take, leaves the byte out of its copy.
	 */
	if (urgent_offset(skb, link, len, &urgent_at)) {
		link->urgent_seq = link->next_seq - len + urgent_at;
		link->flags |= SPLICER_LINK_URGENT_SEEN;
		/* Nothing but the urgent byte: nothing to deliver (and never a zero-length skb). */
		if (len == 1) {
			__sync_fetch_and_add(&link->urgent_dropped, 1);
			__sync_fetch_and_add(&flow->urgent_bytes, 1);
			return SK_DROP;
		}
		/* Where in the passed stream, from 1; one mark at a time, as TCP keeps one. */
		link->urgent_at = link->passed + urgent_at + 1;
		__sync_fetch_and_add(&flow->urgent_passed, 1);
		goto pass;
	}

	/* No entry (pair() always makes one) reads as nothing copied. */
	copied_bytes = 0;
	removed_bytes = 0;
	copied_entry = bpf_map_lookup_elem(&copied, &cookie);
	if (copied_entry) {
		bpf_spin_lock(&copied_entry->lock);
		copied_bytes = copied_entry->bytes;
		removed_bytes = copied_entry->removed;
		bpf_spin_unlock(&copied_entry->lock);
	}
	/* What userspace wrote into the peer: its copies less the urgent bytes it left out. */
	written_bytes = copied_bytes - removed_bytes;
	/*
	 * Passing mode: bytes passed earlier may still wait for userspace to copy them into the
	 * peer. Redirecting now would overtake them, so this skb queues up behind them, unless
	 * the peer shows below that they are all written already.
	 */
	passing = link->passed > copied_bytes;

	/* Measurements only: every skb straight to the peer, however much already waits there. */
	if (!flow_control) {
		if (passing)
			goto pass;
		goto redirect;
	}

	/* Takes a reference on the peer socket, released below on every path. */
	peer = bpf_map_lookup_elem(&sockets, &link->peer_cookie);
	/* The peer left the sockhash (it was closed): keep the bytes here for userspace. */
	if (!peer) {
		__sync_fetch_and_add(&flow->peer_missing, 1);
		goto pass;
	}
	peer_tcp = bpf_skc_to_tcp_sock(peer);
	/* Not a full TCP socket (cannot happen for an established peer): treat as missing. */
	if (!peer_tcp) {
		bpf_sk_release(peer);
		__sync_fetch_and_add(&flow->peer_missing, 1);
		goto pass;
	}
	write_seq = peer_tcp->write_seq;
	peer_room = peer_tcp->inet_conn.icsk_inet.sk.sk_sndbuf -
		    peer_tcp->inet_conn.icsk_inet.sk.sk_wmem_queued;
	bpf_sk_release(peer);

	/*
	 * First look at the peer: everything it holds so far came before this link (or was
	 * copied by userspace, which `copied` already counts). Never taken in passing mode, where
	 * userspace may have written more than it has reported.
	 */
	if (!(link->flags & SPLICER_LINK_BASELINE_SET)) {
		if (passing)
			goto pass;
		link->peer_write_seq_base = write_seq - (__u32)written_bytes;
		link->flags |= SPLICER_LINK_BASELINE_SET;
	}
	/*
	 * Userspace reports its copies (`copied`) only after its send completed and a map
	 * update: under steady arrival passing mode then never ended, and most bytes went
	 * through the copy (89-93% of a 256 MiB loopback transfer). The peer's write_seq knows
	 * sooner: the peer has taken base + redirected + passed bytes only once every passed byte
	 * is written (userspace writes nothing else into it, and each share can only fall short),
	 * so nothing is left to overtake.
	 */
	if (passing) {
		if ((__s32)(write_seq - link->peer_write_seq_base -
			    (__u32)(link->redirected + link->passed - removed_bytes)) < 0)
			goto pass;
		written_bytes = link->passed - removed_bytes;
	}
	pending = peer_pending(link, written_bytes, write_seq);
	if (pending < 0)
		pending = 0;
	/*
	 * Flow control: the peer's psock queue is unbounded and charged to nobody, so stop adding
	 * to it. Passing charges this socket's receive buffer and closes its TCP window instead.
	 */
	if ((__u64)pending > flow_limit_bytes) {
		__sync_fetch_and_add(&flow->limit_trips, 1);
		goto pass;
	}
	/*
	 * And never redirect more than the peer's send buffer can take right now. A redirected
	 * skb the peer cannot take waits on the peer's psock queue, and while that queue is not
	 * empty the kernel defers every skb the peer's own verdict passes onto the same queue,
	 * uncharged: with both directions congested the passes then pile up without bound
	 * (measured: 2.4 GB in 4 s). Queued bytes cost their truesize: an eighth plus a page of
	 * margin covers skb overhead.
	 */
	need = (__s64)pending + len;
	if (need + need / 8 + 4096 > (__s64)peer_room) {
		__sync_fetch_and_add(&flow->room_trips, 1);
		goto pass;
	}
redirect:
	/* Flags 0: to the peer's egress, i.e. sent on the peer's connection. */
	if (bpf_sk_redirect_hash(skb, &sockets, &link->peer_cookie, 0) != SK_PASS) {
		/* The peer vanished since the lookup, or cannot take redirects: keep the bytes. */
		__sync_fetch_and_add(&flow->redirect_failed, 1);
		goto pass;
	}
	__sync_fetch_and_add(&link->redirected, len);
	__sync_fetch_and_add(&flow->redirected_skbs, 1);
	__sync_fetch_and_add(&flow->redirected_bytes, len);
	return SK_PASS;

pass:
	/* Counted before the skb is queued, so userspace never sees bytes it cannot account. */
	__sync_fetch_and_add(&link->passed, len);
	__sync_fetch_and_add(&flow->passed_skbs, 1);
	__sync_fetch_and_add(&flow->passed_bytes, len);
#ifdef SPLICER_TEST_LOSE_PASSED_BYTES
	/*
	 * Only in a test build (tests/CMakeLists.txt, splicer_lose_passed_bytes): a verdict that
	 * loses every byte it should pass, as a kernel whose pass path drops them would. The
	 * sockmap self-test must catch it and keep the daemon off sockmap.
	 */
	return SK_DROP;
#endif
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
