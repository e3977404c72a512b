#include "Sync/StoredInstanceCache.h"

#include "Common/DicomPrefixReader.h"
#include "Common/Exception.h"

#include <openssl/evp.h>

namespace AzureDicom
{
std::string ComputeOrthancId(const std::string& joinedIdentifiers)
{
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(joinedIdentifiers.data(), joinedIdentifiers.size(), digest, &length, EVP_sha1(),
                 nullptr) != 1 ||
      length != 20)
  {
    throw Exception(ErrorCode::InternalError, "OpenSSL cannot compute a SHA-1 digest");
  }

  static const char* const HEX_DIGITS = "0123456789abcdef";
  std::string id;
  id.reserve(44);
  for (unsigned int i = 0; i < length; i++)
  {
    if (i > 0 && i % 4 == 0)
    {
      id.push_back('-');
    }
    id.push_back(HEX_DIGITS[digest[i] >> 4]);
    id.push_back(HEX_DIGITS[digest[i] & 0x0f]);
  }
  return id;
}


namespace
{
// Finds the Patient ID that Orthanc hashed into orthancId, or returns false. The file's value
// has its trailing padding removed already, and Orthanc may also have removed leading spaces.
bool FindHashedPatientId(std::string& patientId, const DicomIdentifiers& identifiers,
                         const std::string& orthancId)
{
  const std::string uids = "|" + identifiers.studyInstanceUid + "|" +
                           identifiers.seriesInstanceUid + "|" + identifiers.sopInstanceUid;
  if (ComputeOrthancId(identifiers.patientId + uids) == orthancId)
  {
    patientId = identifiers.patientId;
    return true;
  }

  const size_t first = identifiers.patientId.find_first_not_of(' ');
  if (first != 0 && first != std::string::npos &&
      ComputeOrthancId(identifiers.patientId.substr(first) + uids) == orthancId)
  {
    patientId = identifiers.patientId.substr(first);
    return true;
  }
  return false;
}
}  // namespace


bool StoredInstanceCache::Note(const std::string& orthancId, const char* file, size_t size)
{
  DicomIdentifiers identifiers;
  std::string patientId;
  if (file == nullptr || !DicomPrefixReader(file, size).ReadIdentifiers(identifiers) ||
      !FindHashedPatientId(patientId, identifiers, orthancId))
  {
    return false;
  }

  NewInstance instance;
  instance.orthancId = orthancId;
  instance.sopInstanceUid = identifiers.sopInstanceUid;
  instance.seriesInstanceUid = identifiers.seriesInstanceUid;
  instance.studyInstanceUid = identifiers.studyInstanceUid;
  instance.orthancStudyId = ComputeOrthancId(patientId + "|" + identifiers.studyInstanceUid);
  instance.size = size;

  // The follower takes entries under SCHED_IDLE, and may wait for CPU time with the lock held.
  // Orthanc's store must not wait for that, so the entry is dropped instead.
  std::unique_lock<std::mutex> lock(mutex_, std::try_to_lock);
  if (!lock.owns_lock())
  {
    return false;
  }
  instances_[orthancId] = std::move(instance);
  order_.push_back(orthancId);
  while (order_.size() > MAX_ENTRIES)
  {
    instances_.erase(order_.front());
    order_.pop_front();
  }
  return true;
}


bool StoredInstanceCache::Take(NewInstance& instance, const std::string& orthancId)
{
  std::lock_guard<std::mutex> lock(mutex_);
  auto found = instances_.find(orthancId);
  if (found == instances_.end())
  {
    return false;
  }
  instance = std::move(found->second);
  instances_.erase(found);
  return true;
}


void StoredInstanceCache::Forget(const std::string& orthancId)
{
  std::lock_guard<std::mutex> lock(mutex_);
  instances_.erase(orthancId);
}


size_t StoredInstanceCache::GetSize() const
{
  std::lock_guard<std::mutex> lock(mutex_);
  return instances_.size();
}
}  // namespace AzureDicom
