#include "Sync/StoredInstanceCache.h"

#include "Common/DicomPrefixReader.h"
#include "Common/Exception.h"

#include <openssl/evp.h>

#include <cstring>
#include <string_view>

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


bool IdentifyInstanceFile(NewInstance& instance, const std::string& orthancId, const char* file,
                          size_t size)
{
  DicomIdentifiers identifiers;
  std::string patientId;
  if (file == nullptr || !OrthancIdIndex::IsOrthancId(orthancId) ||
      !DicomPrefixReader(file, size).ReadIdentifiers(identifiers) ||
      !FindHashedPatientId(patientId, identifiers, orthancId))
  {
    return false;
  }

  instance.orthancId = orthancId;
  instance.orthancStudyId = ComputeOrthancId(patientId + "|" + identifiers.studyInstanceUid);
  instance.sopInstanceUid = std::move(identifiers.sopInstanceUid);
  instance.seriesInstanceUid = std::move(identifiers.seriesInstanceUid);
  instance.studyInstanceUid = std::move(identifiers.studyInstanceUid);
  return true;
}


namespace
{
// Copies value into a field of capacity bytes, or returns false when it does not fit.
template <size_t capacity>
bool CopyField(char (&field)[capacity], uint8_t& length, const std::string& value)
{
  static_assert(capacity <= UINT8_MAX, "the length must fit in a byte");
  if (value.size() > capacity)
  {
    return false;
  }
  std::memcpy(field, value.data(), value.size());
  length = static_cast<uint8_t>(value.size());
  return true;
}
}  // namespace


StoredInstanceCache::StoredInstanceCache() :
    entries_(new Entry[MAX_ENTRIES]),  // uninitialized: an entry is written before it is read
    index_(MAX_ENTRIES, [this](uint32_t position) {
      return std::string_view(entries_[position].orthancId, OrthancIdIndex::ID_LENGTH);
    })
{
}


bool StoredInstanceCache::Note(const std::string& orthancId, const char* file, size_t size)
{
  NewInstance instance;
  if (!IdentifyInstanceFile(instance, orthancId, file, size))
  {
    return false;
  }

  Entry entry;
  std::memcpy(entry.orthancId, orthancId.data(), OrthancIdIndex::ID_LENGTH);
  std::memcpy(entry.orthancStudyId, instance.orthancStudyId.data(), OrthancIdIndex::ID_LENGTH);
  entry.size = size;
  if (!CopyField(entry.sopInstanceUid, entry.sopInstanceUidLength, instance.sopInstanceUid) ||
      !CopyField(entry.seriesInstanceUid, entry.seriesInstanceUidLength,
                 instance.seriesInstanceUid) ||
      !CopyField(entry.studyInstanceUid, entry.studyInstanceUidLength, instance.studyInstanceUid))
  {
    return false;
  }

  // The follower takes entries under SCHED_IDLE, and may wait for CPU time with the lock held.
  // Orthanc's store must not wait for that, so the entry is dropped instead.
  std::unique_lock<std::mutex> lock(mutex_, std::try_to_lock);
  if (!lock.owns_lock())
  {
    return false;
  }

  // The oldest entry, if it is still in the cache, gives its place to the new one. The instance
  // stored again (OverwriteInstances) replaces its entry.
  const uint32_t position = static_cast<uint32_t>(written_ % MAX_ENTRIES);
  if (written_ >= MAX_ENTRIES)
  {
    index_.Remove(std::string_view(entries_[position].orthancId, OrthancIdIndex::ID_LENGTH),
                  position);
  }
  entries_[position] = entry;
  written_++;
  index_.Set(orthancId, position);
  size_ = index_.GetSize();
  return true;
}


bool StoredInstanceCache::Take(NewInstance& instance, const std::string& orthancId)
{
  std::lock_guard<std::mutex> lock(mutex_);
  const uint32_t position = index_.Find(orthancId);
  if (position == OrthancIdIndex::NOT_FOUND)
  {
    return false;
  }

  const Entry& entry = entries_[position];
  instance = NewInstance();
  instance.orthancId = orthancId;
  instance.orthancStudyId.assign(entry.orthancStudyId, OrthancIdIndex::ID_LENGTH);
  instance.sopInstanceUid.assign(entry.sopInstanceUid, entry.sopInstanceUidLength);
  instance.seriesInstanceUid.assign(entry.seriesInstanceUid, entry.seriesInstanceUidLength);
  instance.studyInstanceUid.assign(entry.studyInstanceUid, entry.studyInstanceUidLength);
  instance.size = entry.size;
  index_.Remove(orthancId);
  size_ = index_.GetSize();
  return true;
}


void StoredInstanceCache::Forget(const std::string& orthancId)
{
  std::lock_guard<std::mutex> lock(mutex_);
  index_.Remove(orthancId);
  size_ = index_.GetSize();
}


size_t StoredInstanceCache::GetSize() const
{
  return size_;
}
}  // namespace AzureDicom
