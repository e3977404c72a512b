// Feeds arbitrary bytes, as a stored DICOM file, to the reader that Orthanc's store callback
// runs. AddressSanitizer catches a read past the buffer. The target aborts when the reader's
// two ways of reading disagree, or when the stored-instance cache changes what it read or keeps
// a UID longer than 64 characters.

#include "Common/DicomPrefixReader.h"
#include "Sync/StoredInstanceCache.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
  const char* file = reinterpret_cast<const char*>(data);
  AzureDicom::DicomIdentifiers sop;
  const bool sopFound = AzureDicom::DicomPrefixReader(file, size).ReadSopUids(sop);

  AzureDicom::DicomIdentifiers identifiers;
  if (!AzureDicom::DicomPrefixReader(file, size).ReadIdentifiers(identifiers))
  {
    return 0;
  }

  // Both read the same top-level elements up to (0008,0018).
  if (!sopFound || sop.sopInstanceUid != identifiers.sopInstanceUid ||
      sop.sopClassUid != identifiers.sopClassUid || identifiers.studyInstanceUid.empty() ||
      identifiers.seriesInstanceUid.empty())
  {
    std::abort();
  }

  const std::string orthancId = AzureDicom::ComputeOrthancId(
      identifiers.patientId + "|" + identifiers.studyInstanceUid + "|" +
      identifiers.seriesInstanceUid + "|" + identifiers.sopInstanceUid);
  AzureDicom::StoredInstanceCache cache;
  AzureDicom::NewInstance instance;

  // The cache keeps no UID longer than DICOM's 64 characters.
  const size_t maxUidLength = 64;
  if (identifiers.sopInstanceUid.size() > maxUidLength ||
      identifiers.seriesInstanceUid.size() > maxUidLength ||
      identifiers.studyInstanceUid.size() > maxUidLength)
  {
    if (cache.Note(orthancId, file, size))
    {
      std::abort();
    }
    return 0;
  }

  if (!cache.Note(orthancId, file, size) || !cache.Take(instance, orthancId) ||
      instance.sopInstanceUid != identifiers.sopInstanceUid ||
      instance.seriesInstanceUid != identifiers.seriesInstanceUid ||
      instance.studyInstanceUid != identifiers.studyInstanceUid || instance.size != size)
  {
    std::abort();
  }
  return 0;
}
