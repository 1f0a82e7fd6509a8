/* Test helpers; see testutil.h. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
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

int
t_open_fds (void)
{
  DIR *d = opendir ("/proc/self/fd");
  struct dirent *e;
  int n = 0;

  if (!d)
    abort ();
  while ((e = readdir (d)))
    n += e->d_name[0] != '.';
  closedir (d);
  return n - 1;                 /* opendir's own */
}

int
t_gc_unknown (void *opaque, const char *uuid)
{
  return 0;
}

int
t_gc_unused (void *opaque, const char *path, const char **who)
{
  return 0;
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
  char chardev[4200];
  const char *qsd = getenv ("QSD");
  int i;

  if (!qsd || !*qsd)
    qsd = "qemu-storage-daemon";
  memset (q, 0, sizeof *q);
  if (asprintf (&q->sock, "%s/qsd.sock", dir) == -1 ||
      asprintf (&q->pidfile, "%s/qsd.pid", dir) == -1 ||
      asprintf (&q->log, "%s/qsd.log", dir) == -1)
    abort ();
  snprintf (chardev, sizeof chardev, "socket,id=m0,path=%s,server=on,wait=off", q->sock);
  q->pid = fork ();
  if (q->pid == -1)
    return -1;
  if (q->pid == 0) {
    int null = open ("/dev/null", O_RDWR);
    int log = open (q->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    if (null == -1 || log == -1)
      _exit (126);
    dup2 (null, 0);
    dup2 (log, 1);
    dup2 (log, 2);
    setpgid (0, 0);             /* a ^C to the test is not qsd's */
    execlp (qsd, qsd, "--chardev", chardev, "--monitor", "chardev=m0",
            "--pidfile", q->pidfile, (char *) NULL);
    _exit (127);
  }
  /* Ready once its monitor accepts a connection (10 s at most). */
  for (i = 0; i < 1000; i++) {
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd, r;

    if (waitpid (q->pid, &q->status, WNOHANG) == q->pid) {
      q->reaped = true;
      fprintf (stderr, "qemu-storage-daemon: %s\n", t_qsd_state (q));
      return -1;
    }
    if (strlen (q->sock) >= sizeof sa.sun_path)
      return -1;
    strcpy (sa.sun_path, q->sock);
    fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
      return -1;
    r = connect (fd, (struct sockaddr *) &sa, sizeof sa);
    close (fd);
    if (r == 0)
      return 0;
    {
      struct timespec ts = { 0, 10 * 1000 * 1000 };
      nanosleep (&ts, NULL);    /* waiting for a foreign process to listen */
    }
  }
  return -1;
}

bool
t_qsd_running (struct t_qsd *q)
{
  if (!q->reaped && q->pid > 0 && waitpid (q->pid, &q->status, WNOHANG) == q->pid)
    q->reaped = true;
  return q->pid > 0 && !q->reaped;
}

const char *
t_qsd_state (struct t_qsd *q)
{
  static char buf[2048];
  char tail[1536] = "";
  size_t len = 0;
  bool running = t_qsd_running (q);
  int fd;

  if (q->log && (fd = open (q->log, O_RDONLY | O_CLOEXEC)) != -1) {
    off_t end = lseek (fd, 0, SEEK_END);
    ssize_t n;

    if (end > (off_t) sizeof tail - 1)
      lseek (fd, end - (off_t) (sizeof tail - 1), SEEK_SET);
    else
      lseek (fd, 0, SEEK_SET);
    n = read (fd, tail, sizeof tail - 1);
    close (fd);
    len = n > 0 ? (size_t) n : 0;
    tail[len] = '\0';
  }
  if (running)
    snprintf (buf, sizeof buf, "pid %d running; its log: %s", (int) q->pid,
              len ? tail : "(empty)");
  else if (WIFSIGNALED (q->status))
    snprintf (buf, sizeof buf, "pid %d killed by signal %d; its log: %s", (int) q->pid,
              WTERMSIG (q->status), len ? tail : "(empty)");
  else
    snprintf (buf, sizeof buf, "pid %d exited with status %d; its log: %s", (int) q->pid,
              WEXITSTATUS (q->status), len ? tail : "(empty)");
  return buf;
}

void
t_qsd_stop (struct t_qsd *q)
{
  int i;

  if (q->pid > 0 && !q->reaped) {
    kill (q->pid, SIGTERM);
    for (i = 0; i < 500; i++) {
      struct timespec ts = { 0, 10 * 1000 * 1000 };

      if (waitpid (q->pid, &q->status, WNOHANG) == q->pid)
        break;
      nanosleep (&ts, NULL);    /* waiting for a child to exit */
    }
    if (i == 500) {
      kill (q->pid, SIGKILL);
      waitpid (q->pid, &q->status, 0);
    }
  }
  free (q->sock);
  free (q->pidfile);
  free (q->log);
  q->sock = q->pidfile = q->log = NULL;
  q->pid = 0;
  q->reaped = false;
}
