/**
 * Known OCI regions (regionKey, regionIdentifier, realmKey, realmDomainComponent), used to
 * derive region keys, realm keys and host names. Dedicated regions are not listed: callers
 * pass their keys explicitly.
 */

/** One known region. */
export interface Region {
  regionKey: string;
  regionId: string;
  realmKey: string;
  realmDomain: string;
}

const TABLE = `
yny ap-chuncheon-1 oc1 oraclecloud.com
hyd ap-hyderabad-1 oc1 oraclecloud.com
mel ap-melbourne-1 oc1 oraclecloud.com
bom ap-mumbai-1 oc1 oraclecloud.com
kix ap-osaka-1 oc1 oraclecloud.com
icn ap-seoul-1 oc1 oraclecloud.com
syd ap-sydney-1 oc1 oraclecloud.com
nrt ap-tokyo-1 oc1 oraclecloud.com
yul ca-montreal-1 oc1 oraclecloud.com
yyz ca-toronto-1 oc1 oraclecloud.com
ams eu-amsterdam-1 oc1 oraclecloud.com
fra eu-frankfurt-1 oc1 oraclecloud.com
zrh eu-zurich-1 oc1 oraclecloud.com
jed me-jeddah-1 oc1 oraclecloud.com
dxb me-dubai-1 oc1 oraclecloud.com
gru sa-saopaulo-1 oc1 oraclecloud.com
cwl uk-cardiff-1 oc1 oraclecloud.com
lhr uk-london-1 oc1 oraclecloud.com
iad us-ashburn-1 oc1 oraclecloud.com
phx us-phoenix-1 oc1 oraclecloud.com
sjc us-sanjose-1 oc1 oraclecloud.com
vcp sa-vinhedo-1 oc1 oraclecloud.com
scl sa-santiago-1 oc1 oraclecloud.com
lfi us-langley-1 oc2 oraclegovcloud.com
luf us-luke-1 oc2 oraclegovcloud.com
ric us-gov-ashburn-1 oc3 oraclegovcloud.com
pia us-gov-chicago-1 oc3 oraclegovcloud.com
tus us-gov-phoenix-1 oc3 oraclegovcloud.com
ltn uk-gov-london-1 oc4 oraclegovcloud.uk
brs uk-gov-cardiff-1 oc4 oraclegovcloud.uk
nja ap-chiyoda-1 oc8 oraclecloud8.com
ukb ap-ibaraki-1 oc8 oraclecloud8.com
mtz il-jerusalem-1 oc1 oraclecloud.com
mrs eu-marseille-1 oc1 oraclecloud.com
sin ap-singapore-1 oc1 oraclecloud.com
auh me-abudhabi-1 oc1 oraclecloud.com
lin eu-milan-1 oc1 oraclecloud.com
arn eu-stockholm-1 oc1 oraclecloud.com
jnb af-johannesburg-1 oc1 oraclecloud.com
mct me-dcc-muscat-1 oc9 oraclecloud9.com
wga ap-dcc-canberra-1 oc10 oraclecloud10.com
cdg eu-paris-1 oc1 oraclecloud.com
qro mx-queretaro-1 oc1 oraclecloud.com
mad eu-madrid-1 oc1 oraclecloud.com
bgy eu-dcc-milan-1 oc14 oraclecloud14.com
ord us-chicago-1 oc1 oraclecloud.com
mxp eu-dcc-milan-2 oc14 oraclecloud14.com
snn eu-dcc-dublin-2 oc14 oraclecloud14.com
dtm eu-dcc-rating-2 oc14 oraclecloud14.com
dus eu-dcc-rating-1 oc14 oraclecloud14.com
ork eu-dcc-dublin-1 oc14 oraclecloud14.com
beg eu-jovanovac-1 oc20 oraclecloud20.com
vll eu-madrid-2 oc19 oraclecloud.eu
str eu-frankfurt-2 oc19 oraclecloud.eu
mty mx-monterrey-1 oc1 oraclecloud.com
aga us-saltlake-2 oc1 oraclecloud.com
avz eu-dcc-zurich-1 oc24 oraclecloud24.com
bog sa-bogota-1 oc1 oraclecloud.com
vap sa-valparaiso-1 oc1 oraclecloud.com
doh me-dcc-doha-1 oc21 oraclecloud21.com
ahu me-abudhabi-3 oc26 oraclecloud26.com
dac ap-dcc-gazipur-1 oc15 oraclecloud15.com
xsp ap-singapore-2 oc1 oraclecloud.com
rkt me-abudhabi-2 oc29 oraclecloud29.com
ruh me-riyadh-1 oc1 oraclecloud.com
shj me-abudhabi-4 oc29 oraclecloud29.com
avf eu-crissier-1 oc24 oraclecloud24.com
ebb us-somerset-1 oc23 oraclecloud23.com
ebl us-thames-1 oc23 oraclecloud23.com
dtz ap-seoul-2 oc35 oraclecloud35.com
dln ap-suwon-1 oc35 oraclecloud35.com
bno ap-chuncheon-2 oc35 oraclecloud35.com
rba me-alain-1 oc26 oraclecloud26.com
yxj us-ashburn-2 oc42 oraclecloud42.com
onm ap-delhi-1 oc1 oraclecloud.com
hsg ap-batam-1 oc1 oraclecloud.com
pgc us-newark-1 oc42 oraclecloud42.com
jsk eu-budapest-1 oc51 oraclecloud51.com
ibr me-ibri-1 oc9 oraclecloud9.com
orf eu-madrid-3 oc1 oraclecloud.com
nrq eu-turin-1 oc1 oraclecloud.com
hnw sa-riodejaneiro-1 oc52 oraclecloud52.com
jbp ap-kulai-2 oc1 oraclecloud.com
lej af-casablanca-1 oc1 oraclecloud.com
vve me-alrayyan-1 oc21 oraclecloud21.com
`;

/** Every known region, keyed by region identifier (e.g. "us-ashburn-1"). */
export const REGIONS: ReadonlyMap<string, Region> = new Map(
  TABLE.trim().split("\n").map((line) => {
    const [key, regionId, realmKey, realmDomain] = line.split(" ");
    return [regionId, { regionKey: key.toUpperCase(), regionId, realmKey, realmDomain }];
  }),
);

/** The realm key of a realm domain, when exactly one realm uses it (oc2 and oc3 share one). */
export function realmKeyOfDomain(domain: string): string | undefined {
  const keys = new Set(
    [...REGIONS.values()].filter((r) => r.realmDomain === domain).map((r) => r.realmKey),
  );
  return keys.size === 1 ? [...keys][0] : undefined;
}
