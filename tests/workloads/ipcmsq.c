/*
 * ipcmsq: SysV message queues with typed messages waiting in them.
 *
 *   ipcmsq [-d MS] [-n N] [-e CODE] [-k KEY]
 *
 * Creates a keyed queue (KEY, default 0x43520000 + pid % 65536, the next free
 * one) and a private queue, and puts five messages of types 1..5 in each.
 * Each iteration receives, from each queue, the message of type (N % 5) + 1
 * (IPC_NOWAIT: it must be there), checks its bytes (derived from the queue,
 * the type and how often that type was received), and sends it back with the
 * next generation. Checks that msgget(KEY) still finds the same id and that
 * each queue holds 5 messages. Prints "count N ids=KEYED,PRIVATE key=KEY".
 * With -n it removes both queues before exiting; when killed, the test must
 * remove them (the ids are on every line).
 */
#include "common.h"
#include <sys/ipc.h>
#include <sys/msg.h>

#define LEN 200

struct msg {
	long type;
	unsigned char text[LEN];
};

static void body(struct msg *m, int q, long type, long long gen)
{
	m->type = type;
	for (int i = 0; i < LEN; i++)
		m->text[i] = (unsigned char)(mix64(((uint64_t)q << 40) ^ ((uint64_t)type << 32) ^ ((uint64_t)gen << 8) ^ (uint64_t)i) & 0xff);
}

int main(int argc, char **argv)
{
	key_t key = 0x43520000 + (getpid() % 65536);
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS "k:")) != -1) {
		if (common_opt(c, optarg))
			continue;
		if (c == 'k')
			key = (key_t)parse_num(optarg, "key");
		else
			usage("ipcmsq [-k KEY]");
	}
	int ids[2];
	for (;; key++) {
		ids[0] = msgget(key, IPC_CREAT | IPC_EXCL | 0600);
		if (ids[0] >= 0)
			break;
		CHECK_SYS(errno == EEXIST, "msgget");
	}
	ids[1] = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
	CHECK_SYS(ids[1] >= 0, "msgget");
	long long gen[2][6] = { { 0 } };
	struct msg m, want;
	for (int q = 0; q < 2; q++)
		for (long t = 1; t <= 5; t++) {
			body(&m, q, t, 0);
			CHECK_SYS(msgsnd(ids[q], &m, LEN, IPC_NOWAIT) == 0, "msgsnd");
		}
	for (long long n = 1;; n++) {
		CHECK(msgget(key, 0) == ids[0], "msgget(%#x) gives %d, expected %d", key, msgget(key, 0), ids[0]);
		long t = n % 5 + 1;
		for (int q = 0; q < 2; q++) {
			struct msqid_ds ds;
			CHECK_SYS(msgctl(ids[q], IPC_STAT, &ds) == 0, "msgctl");
			CHECK(ds.msg_qnum == 5, "queue %d holds %lu messages", ids[q], (unsigned long)ds.msg_qnum);
			ssize_t r = msgrcv(ids[q], &m, LEN, t, IPC_NOWAIT);
			CHECK_SYS(r == LEN, "msgrcv");
			body(&want, q, t, gen[q][t]);
			CHECK(m.type == t && !memcmp(m.text, want.text, LEN), "queue %d type %ld: wrong message", ids[q], t);
			gen[q][t]++;
			body(&m, q, t, gen[q][t]);
			CHECK_SYS(msgsnd(ids[q], &m, LEN, IPC_NOWAIT) == 0, "msgsnd");
		}
		out("count %lld ids=%d,%d key=%#x", n, ids[0], ids[1], key);
		if (opt_max > 0 && n >= opt_max) {
			msgctl(ids[0], IPC_RMID, NULL);
			msgctl(ids[1], IPC_RMID, NULL);
			exit(opt_exit);
		}
		sleep_ms(opt_delay_ms);
	}
}
