// Whether this addon build has process groups (Note [Optional Gloo] in cpp/group/group.h), and what to do if not.
import { native } from '../native/addon.js';

export interface GroupSupport {
  available: boolean;
  /** Why not, when not available. */
  reason?: string;
  gloo?: string;
  stores: string[];
  transports: string[];
}

export function groupSupport(): GroupSupport {
  return native().groupSupport();
}

/** The error a multi-process run gets from an addon built without Gloo: why, and how to enable it. */
export function groupsUnavailableMessage(reason: string): string {
  return (
    `towerline: multi-process training needs process groups, which this addon does not have (${reason}; the prebuilt ` +
    'addon of the npm package is built without them). Install Gloo and hiredis (Debian/Ubuntu: apt-get install ' +
    'libgloo-dev libhiredis-dev), then build the addon from source: in an app, TOWERLINE_BUILD_FROM_SOURCE=1 npm rebuild ' +
    'towerline; in a checkout, npm run build:native. A build configured with -DTOWERLINE_GLOO=OFF never has them.'
  );
}

/** Throws groupsUnavailableMessage's error unless this build has process groups. */
export function assertGroupsAvailable(support: GroupSupport = groupSupport()): void {
  if (!support.available) throw new Error(groupsUnavailableMessage(support.reason ?? 'unknown reason'));
}
