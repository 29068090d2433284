// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The sk_skb stream verdict program: every skb arriving on a socket in the sockhash is
 * redirected to that socket's peer, found through the peer map. Needs only UAPI headers.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "splicer/bpf_abi.h"

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, SPLICER_MAX_SOCKETS);
	__type(key, splicer_cookie);
	__type(value, __u64);
} sockets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SPLICER_MAX_SOCKETS);
	__type(key, splicer_cookie);
	__type(value, struct splicer_peer);
} peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct splicer_counters);
} counters SEC(".maps");

SEC("sk_skb/stream_verdict")
int splice_verdict(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct splicer_counters *count = bpf_map_lookup_elem(&counters, &zero);
	splicer_cookie cookie = bpf_get_socket_cookie(skb);
	struct splicer_peer *peer = bpf_map_lookup_elem(&peers, &cookie);

	/* A percpu array slot always exists; the check only satisfies the verifier. */
	if (!count)
		return SK_PASS;
	/* Not (or no longer) paired: leave the bytes to userspace on this socket. */
	if (!peer) {
		count->no_peer++;
		return SK_PASS;
	}
	if (bpf_sk_redirect_hash(skb, &sockets, &peer->peer_cookie, 0) != SK_PASS) {
		/* The peer left the sockhash (closed): nobody can take these bytes. */
		count->redirect_failed++;
		return SK_DROP;
	}
	if (peer->direction < SPLICER_DIR_COUNT) {
		count->redirected_skbs[peer->direction]++;
		count->redirected_bytes[peer->direction] += skb->len;
	}
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
