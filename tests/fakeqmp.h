/* A scripted fake QMP server for tests, run in a thread.
 *
 * It listens on a socket in a directory of the test's, accepts one
 * client and plays its script: each step optionally reads one command and
 * checks its "execute" name, or all of it but its id, then sends text ($ID is replaced by the id of
 * the command just read), or stalls, or closes.  A command that differs
 * from the script, or arrives after its end, fails the test through
 * fake_qmp_finish(). */
#ifndef OVL_FAKEQMP_H
#define OVL_FAKEQMP_H

#include <stddef.h>

enum fake_action {
  FAKE_SEND,                    /* send .text in one write */
  FAKE_SEND_SPLIT,              /* send .text one byte per write */
  FAKE_SEND_DELAYED,            /* wait 200 ms, then send .text */
  FAKE_STALL,                   /* send nothing more; wait for the client to leave */
  FAKE_CLOSE,                   /* close the connection */
  FAKE_DROP,                    /* close it unread, then serve the next client */
  FAKE_NEXT,                    /* close it at once, then serve the next client */
  FAKE_STALL_NEXT,              /* send nothing more until the client leaves,
                                 * then serve the next client */
};

struct fake_step {
  const char *expect;           /* command to read first, or NULL: its name
                                 * ("query-jobs"), or the whole command but
                                 * its id in JSON ('{"execute": ...}') */
  enum fake_action action;
  const char *text;
};

#define FAKE_GREETING \
  "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, " \
  "\"package\": \"fake\"}, \"capabilities\": [\"oob\"]}}\r\n"
#define FAKE_OK "{\"return\": {}, \"id\": $ID}\r\n"

struct fake_qmp;

struct fake_qmp *fake_qmp_start (const char *dir, const struct fake_step *steps, size_t n);
const char *fake_qmp_socket (const struct fake_qmp *f);
/* Wait for the script to end; 0 if every step ran and nothing unexpected
 * arrived, else -1 and *why says what went wrong.  Frees F. */
int fake_qmp_finish (struct fake_qmp *f, char **why);

#endif
