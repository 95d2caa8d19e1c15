/*
 * vdm: the device host. A CPU-less machine (qtest accelerator) whose guest
 * memory and devices a test drives over the qtest and QMP sockets.
 */
#include "sysemu/sysemu.h"

int main(int argc, char **argv)
{
    int status;

    vdm_init(argc, argv);
    status = vdm_main_loop();
    vdm_cleanup();
    return status;
}
