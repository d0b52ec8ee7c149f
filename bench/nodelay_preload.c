/* LD_PRELOAD shim used once for BENCHMARKS.md: TCP_NODELAY on every accepted socket.
   gcc -shared -fPIC -O2 -o nodelay.so bench/nodelay_preload.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
static void nd(int fd){ if(fd>=0){int one=1; setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);} }
int accept(int s, struct sockaddr *a, socklen_t *l){ static int (*f)(int,struct sockaddr*,socklen_t*); if(!f) f=dlsym(RTLD_NEXT,"accept"); int fd=f(s,a,l); nd(fd); return fd; }
int accept4(int s, struct sockaddr *a, socklen_t *l, int fl){ static int (*f)(int,struct sockaddr*,socklen_t*,int); if(!f) f=dlsym(RTLD_NEXT,"accept4"); int fd=f(s,a,l,fl); nd(fd); return fd; }
