/* Test helpers; see testutil.h. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

void
t_require (const char *prog)
{
  char *path = getenv ("PATH"), *copy, *dir, *save = NULL;
  char buf[4096];

  if (prog[0] == '/' && access (prog, X_OK) == 0)
    return;
  copy = strdup (path ? path : "/usr/bin:/bin");
  for (dir = strtok_r (copy, ":", &save); dir; dir = strtok_r (NULL, ":", &save)) {
    snprintf (buf, sizeof buf, "%s/%s", dir, prog);
    if (access (buf, X_OK) == 0) {
      free (copy);
      return;
    }
  }
  free (copy);
  if (getenv ("OVL_REQUIRE_ALL") && strcmp (getenv ("OVL_REQUIRE_ALL"), "1") == 0) {
    fprintf (stderr, "required program %s is missing (OVL_REQUIRE_ALL=1)\n", prog);
    exit (1);
  }
  fprintf (stderr, "SKIP: %s is not installed\n", prog);
  exit (77);
}

char *
t_read_file (const char *path, size_t *len)
{
  FILE *f = fopen (path, "rb");
  char *buf;
  long n;

  if (!f)
    return NULL;
  fseek (f, 0, SEEK_END);
  n = ftell (f);
  fseek (f, 0, SEEK_SET);
  buf = malloc ((size_t) n + 1);
  if (fread (buf, 1, (size_t) n, f) != (size_t) n) {
    fclose (f);
    free (buf);
    return NULL;
  }
  buf[n] = '\0';
  fclose (f);
  if (len)
    *len = (size_t) n;
  return buf;
}

char *
t_golden (const char *path, const char *got)
{
  if (getenv ("OVL_REGENERATE")) {
    FILE *f = fopen (path, "w");
    if (f) {
      fputs (got, f);
      fclose (f);
    }
  }
  return t_read_file (path, NULL);
}

char *
t_data_path (const char *rel)
{
  const char *srcdir = getenv ("srcdir");
  char *p;
  if (asprintf (&p, "%s/tests/data/%s", srcdir ? srcdir : ".", rel) == -1)
    abort ();
  return p;
}

char *
t_mkdtemp (void)
{
  const char *tmp = getenv ("TMPDIR");
  char *d;

  if (asprintf (&d, "%s/ovltest.XXXXXX", tmp && *tmp ? tmp : "/tmp") == -1)
    abort ();
  if (!mkdtemp (d))
    abort ();
  /* qemu as libvirt-qemu must be able to traverse it. */
  chmod (d, 0711);
  return d;
}

static int
rm_one (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  (void) st; (void) ftw;
  if (flag == FTW_DP)
    rmdir (path);
  else
    unlink (path);
  return 0;
}

int
t_run (const char *fmt, ...)
{
  char cmd[8192];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (cmd, sizeof cmd, fmt, ap);
  va_end (ap);
  if (system (cmd) == 0)
    return 0;
  fprintf (stderr, "failed: %s\n", cmd);
  return -1;
}

void
t_rmtree (const char *dir)
{
  if (dir)
    nftw (dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

bool
t_pid_alive (pid_t pid)
{
  char path[64], buf[512], *rp;
  FILE *f;
  size_t n;

  snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
  if (!(f = fopen (path, "r")))
    return false;
  n = fread (buf, 1, sizeof buf - 1, f);
  fclose (f);
  buf[n] = '\0';
  rp = strrchr (buf, ')');
  return rp && rp[1] == ' ' && rp[2] != 'Z' && rp[2] != 'X';
}

int
t_qsd_start (struct t_qsd *q, const char *dir)
{
  char chardev[4200], pidbuf[32];
  const char *qsd = getenv ("QSD");
  pid_t child;
  int status, fd;
  ssize_t n;

  if (!qsd || !*qsd)
    qsd = "qemu-storage-daemon";
  if (asprintf (&q->sock, "%s/qsd.sock", dir) == -1 ||
      asprintf (&q->pidfile, "%s/qsd.pid", dir) == -1)
    abort ();
  snprintf (chardev, sizeof chardev, "socket,id=m0,path=%s,server=on,wait=off", q->sock);
  child = fork ();
  if (child == 0) {
    int null = open ("/dev/null", O_RDWR);
    dup2 (null, 0); dup2 (null, 1);
    execlp (qsd, qsd, "--chardev", chardev, "--monitor", "chardev=m0",
            "--pidfile", q->pidfile, "--daemonize", (char *) NULL);
    _exit (127);
  }
  /* --daemonize: the parent exits once the socket and pidfile exist. */
  if (waitpid (child, &status, 0) == -1 || !WIFEXITED (status) || WEXITSTATUS (status) != 0)
    return -1;
  fd = open (q->pidfile, O_RDONLY);
  if (fd == -1)
    return -1;
  n = read (fd, pidbuf, sizeof pidbuf - 1);
  close (fd);
  if (n <= 0)
    return -1;
  pidbuf[n] = '\0';
  q->pid = (pid_t) atoi (pidbuf);
  return q->pid > 0 ? 0 : -1;
}

void
t_qsd_stop (struct t_qsd *q)
{
  int i;

  if (q->pid > 0) {
    kill (q->pid, SIGTERM);
    for (i = 0; i < 500 && t_pid_alive (q->pid); i++) {
      struct timespec ts = { 0, 10 * 1000 * 1000 };
      nanosleep (&ts, NULL);    /* waiting for a foreign process to exit */
      waitpid (q->pid, NULL, WNOHANG);
    }
  }
  free (q->sock);
  free (q->pidfile);
  q->sock = q->pidfile = NULL;
  q->pid = 0;
}
