/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The one definition of what the BPF side and userspace share: map sizes, keys, values and
 * counters. Compiled by clang -target bpf (bpf/splice.bpf.c) and by g++ (userspace), so it
 * uses only fixed-width kernel types, explicit padding and size assertions.
 */
#pragma once

#include <linux/types.h>

#ifdef __cplusplus
#define SPLICER_STATIC_ASSERT static_assert
#else
#define SPLICER_STATIC_ASSERT _Static_assert
#endif

/* Sockets the sockhash can hold: two per spliced connection. */
#define SPLICER_MAX_SOCKETS 131072

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

/* Peer map value, keyed by a socket's cookie: where its bytes go. */
struct splicer_peer {
	splicer_cookie peer_cookie; /* sockhash key of the socket to redirect to */
	__u32 direction;            /* enum splicer_direction of bytes arriving on the key */
	__u32 pad;
};
SPLICER_STATIC_ASSERT(sizeof(struct splicer_peer) == 16, "splicer_peer layout");

/* Per-CPU counters, one array slot; userspace sums the CPUs. */
struct splicer_counters {
	__u64 redirected_skbs[SPLICER_DIR_COUNT];
	__u64 redirected_bytes[SPLICER_DIR_COUNT];
	__u64 no_peer;          /* verdict ran on a socket with no peer entry: passed up */
	__u64 redirect_failed;  /* bpf_sk_redirect_hash found no peer socket: dropped */
};
SPLICER_STATIC_ASSERT(sizeof(struct splicer_counters) == 48, "splicer_counters layout");
